/**
 * img-logout: the registry's `auths` entries (its own key and URL spellings
 * of its host) are removed and every other key of config.json kept (0600);
 * Docker Hub by default; a credsStore helper (a fake `docker-credential-*`
 * script on PATH that logs what it is given) is told to erase; "not logged
 * in" and a helper's "credentials not found" are not errors, a failing helper
 * or a malformed config.json are (ERR_AUTH_HELPER); usage errors exit 2.
 */
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runTool } from '../../../test/helpers/tools.js';

const errorOf = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error');
const infoOf = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'info')?.message;
let dirs = 0;

function dockerDir(t: Tap.Test, config?: object): string {
  const dir = join(t.testdirName, `docker-${++dirs}`);
  mkdirSync(dir, { recursive: true });
  t.teardown(() => rmSync(t.testdirName, { recursive: true, force: true }));
  if (config) writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

/** A helper that logs `ACTION <stdin>` and exits with `status`, printing `output`. */
function fakeHelper(t: Tap.Test, name: string, status = 0, output = ''): { path: string; log: string } {
  const dir = join(t.testdirName, `helper-${name}`);
  mkdirSync(join(dir, 'bin'), { recursive: true });
  t.teardown(() => rmSync(t.testdirName, { recursive: true, force: true }));
  const log = join(dir, 'helper.log');
  const script = join(dir, 'bin', `docker-credential-${name}`);
  writeFileSync(script, `#!/bin/sh\ninput=$(cat)\nprintf '%s %s\\n' "$1" "$input" >> '${log}'\necho '${output}'\nexit ${status}\n`);
  chmodSync(script, 0o755);
  return { path: `${join(dir, 'bin')}:${process.env.PATH}`, log };
}

const logout = (args: string[], dir: string, path = process.env.PATH) =>
  runTool('img-logout', ['--log-format=json', ...args], { env: { PATH: path, HOME: '/nonexistent-home', DOCKER_CONFIG: dir } });
const read = (dir: string) => JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));

t.test("the registry's entries go, every other key stays", async (t) => {
  const dir = dockerDir(t, {
    auths: { 'localhost:5000': { auth: 'YTpi' }, 'http://localhost:5000/v2/': { auth: 'YTpi' }, 'localhost:5001': { auth: 'YzpkIA==' } },
    credHelpers: { 'gcr.io': 'gcloud' },
    HttpHeaders: { 'X-Meta': 'kept' },
  });
  const r = await logout(['localhost:5000'], dir);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '');
  t.match(infoOf(r.logs), /removed the login credentials for localhost:5000/);
  t.strictSame(read(dir), { auths: { 'localhost:5001': { auth: 'YzpkIA==' } }, credHelpers: { 'gcr.io': 'gcloud' }, HttpHeaders: { 'X-Meta': 'kept' } });
  t.equal(statSync(join(dir, 'config.json')).mode & 0o777, 0o600);
});

t.test('Docker Hub is the default; its key is the index URL', async (t) => {
  const dir = dockerDir(t, { auths: { 'https://index.docker.io/v1/': { auth: 'YTpi' }, other: {} } });
  const r = await logout([], dir);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(read(dir), { auths: { other: {} } });
});

t.test('not logged in: exit 0, nothing written', async (t) => {
  const dir = dockerDir(t, { auths: { 'other.example.com': {} } });
  const text = readFileSync(join(dir, 'config.json'), 'utf8');
  const r = await logout(['registry.example.com'], dir);
  t.equal(r.code, 0);
  t.match(infoOf(r.logs), /not logged in to registry\.example\.com/);
  t.equal(readFileSync(join(dir, 'config.json'), 'utf8'), text);
  const empty = dockerDir(t);
  const none = await logout(['registry.example.com'], empty);
  t.equal(none.code, 0);
  t.notOk(existsSync(join(empty, 'config.json')), 'no config.json created');
});

t.test('credsStore: the helper erases the server, the entry goes from auths', async (t) => {
  const helper = fakeHelper(t, 'fake');
  const dir = dockerDir(t, { credsStore: 'fake', auths: { 'localhost:5000': {} } });
  const r = await logout(['localhost:5000'], dir, helper.path);
  t.equal(r.code, 0, r.stderr);
  t.equal(readFileSync(helper.log, 'utf8'), 'erase localhost:5000\n');
  t.strictSame(read(dir), { credsStore: 'fake', auths: {} });
});

t.test("a helper's 'credentials not found' is not an error; another failure is", async (t) => {
  const notFound = fakeHelper(t, 'empty', 1, 'credentials not found in native keychain');
  const dir = dockerDir(t, { credsStore: 'empty' });
  const r = await logout(['localhost:5000'], dir, notFound.path);
  t.equal(r.code, 0, r.stderr);
  t.match(infoOf(r.logs), /not logged in/);
  const broken = fakeHelper(t, 'broken', 3, 'keychain locked');
  const dir2 = dockerDir(t, { credsStore: 'broken', auths: { 'localhost:5000': {} } });
  const failed = await logout(['localhost:5000'], dir2, broken.path);
  t.equal(failed.code, 1);
  t.equal(errorOf(failed.logs)?.code, 'ERR_AUTH_HELPER');
  t.match(errorOf(failed.logs)?.message, /docker-credential-broken erase failed \(exit 3\): keychain locked/);
  t.strictSame(read(dir2), { credsStore: 'broken', auths: { 'localhost:5000': {} } }, 'the entry stays when the helper failed');
});

t.test('a malformed config.json: ERR_AUTH_HELPER, left alone', async (t) => {
  const dir = dockerDir(t);
  writeFileSync(join(dir, 'config.json'), '[1,2]');
  const r = await logout(['localhost:5000'], dir);
  t.equal(r.code, 1);
  t.equal(errorOf(r.logs)?.code, 'ERR_AUTH_HELPER');
  t.equal(readFileSync(join(dir, 'config.json'), 'utf8'), '[1,2]');
});

t.test('usage errors exit 2', async (t) => {
  const dir = dockerDir(t);
  for (const args of [['--frobnicate'], ['a.example.com', 'b.example.com'], ['not a host!'], ['-u', 'x']]) {
    const r = await logout(args, dir);
    t.equal(r.code, 2, args.join(' '));
    t.equal(errorOf(r.logs)?.code, 'ERR_USAGE', args.join(' '));
  }
});
