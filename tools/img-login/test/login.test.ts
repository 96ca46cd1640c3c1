/**
 * img-login against real registries (docker-registry with htpasswd basic
 * auth, and with bearer tokens from the test token issuer): good credentials
 * are checked with GET /v2/ and stored in config.json `auths` (0600, every
 * other key kept, through a symlink) where img-search then finds them; bad
 * ones are ERR_REGISTRY_UNAUTHORIZED and nothing is stored; a credsStore /
 * credHelpers helper (a fake `docker-credential-*` script on PATH that logs
 * what it is given) receives {ServerURL, Username, Secret} and config.json
 * keeps no secret; usage errors exit 2.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import { pushImage, startRegistry } from '../../../test/helpers/registry.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';

const basicReg = await startRegistry({ htpasswd: { alice: 's3cret pass' } });
t.teardown(() => basicReg.stop());
// TLS too: the TLS flags reach the client (its own TLS behaviour is img-fetch's tests').
const tokenReg = await startRegistry({ tls: true, token: { users: { bob: 'b0b:token' } } });
t.teardown(() => tokenReg.stop());
await pushImage(`${busyboxLayout()}:latest`, basicReg, 'private/bb:v1');

const errorOf = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error');
const b64 = (text: string) => Buffer.from(text).toString('base64');

let dirs = 0;

/** A fresh DOCKER_CONFIG directory, optionally with a config.json. */
function dockerDir(t: Tap.Test, config?: object): string {
  const dir = join(t.testdirName, `docker-${++dirs}`);
  mkdirSync(dir, { recursive: true });
  t.teardown(() => rmSync(t.testdirName, { recursive: true, force: true }));
  if (config) writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  return dir;
}

function login(args: string[], dir: string, input?: string, path = process.env.PATH) {
  return runTool('img-login', ['--log-format=json', ...args], { env: { PATH: path, HOME: '/nonexistent-home', DOCKER_CONFIG: dir }, input });
}

/** A fake credential helper that logs `ACTION <stdin>` lines and succeeds. */
function fakeHelper(t: Tap.Test, name: string): { path: string; log: string } {
  const dir = join(t.testdirName, `helper-${name}`);
  const bin = join(dir, 'bin');
  const log = join(dir, 'helper.log');
  mkdirSync(bin, { recursive: true });
  t.teardown(() => rmSync(t.testdirName, { recursive: true, force: true }));
  const script = join(bin, `docker-credential-${name}`);
  writeFileSync(script, `#!/bin/sh\ninput=$(cat)\nprintf '%s %s\\n' "$1" "$input" >> '${log}'\nexit 0\n`);
  chmodSync(script, 0o755);
  return { path: `${bin}:${process.env.PATH}`, log };
}

t.test('basic auth: good credentials are verified and stored; other keys are kept', async (t) => {
  const before = {
    auths: { 'other.example.com': { auth: b64('x:y') } },
    credHelpers: { 'gcr.io': 'gcloud' },
    proxies: { default: { httpProxy: 'http://proxy:3128' } },
    detachKeys: 'ctrl-e,e',
  };
  const dir = dockerDir(t, before);
  const r = await login(['-u', 'alice', '--password-stdin', basicReg.host], dir, 's3cret pass\n');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '', 'stdout carries data only');
  t.match(r.logs.find((l) => l.level === 'info')?.message, /login succeeded/);
  const file = join(dir, 'config.json');
  const after = JSON.parse(readFileSync(file, 'utf8'));
  t.strictSame(after, { ...before, auths: { ...before.auths, [basicReg.host]: { auth: b64('alice:s3cret pass') } } });
  t.equal(statSync(file).mode & 0o777, 0o600);
  t.match(basicReg.logs(), /"GET \/v2\/ HTTP\/1.1" 200/, 'checked with GET /v2/');
  const search = await runTool('img-search', ['--tags', `${basicReg.host}/private/bb`], {
    env: { PATH: process.env.PATH, HOME: '/nonexistent-home', DOCKER_CONFIG: dir },
  });
  t.equal(search.code, 0, search.stderr);
  t.strictSame(
    search.records.map((x) => x.ref),
    [`${basicReg.host}/private/bb:v1`],
    'the stored credentials are the ones img-search uses',
  );
});

t.test('basic auth: a wrong password is refused and nothing is stored', async (t) => {
  const dir = dockerDir(t, { auths: {}, keep: 'me' });
  const text = readFileSync(join(dir, 'config.json'), 'utf8');
  const r = await login(['-u', 'alice', '--password-stdin', basicReg.host], dir, 'wrong\n');
  t.equal(r.code, 1);
  t.equal(errorOf(r.logs)?.code, 'ERR_REGISTRY_UNAUTHORIZED');
  t.match(errorOf(r.logs)?.hint, /nothing was stored/);
  t.equal(readFileSync(join(dir, 'config.json'), 'utf8'), text, 'config.json untouched');
  const fresh = dockerDir(t);
  const none = await login(['-u', 'mallory', '-p', 'x', basicReg.host], fresh);
  t.equal(none.code, 1);
  t.notOk(existsSync(join(fresh, 'config.json')), 'no config.json created');
  t.match(none.logs.find((l) => l.level === 'warn')?.message, /--password.*insecure.*--password-stdin/, '-p warns as docker does');
});

t.test('token auth over TLS: checked through the token server, stored; a bad password is refused; an untrusted certificate too', async (t) => {
  const issuer = tokenReg.tokenIssuer!;
  const dir = dockerDir(t);
  const before = issuer.requests.length;
  const untrusted = await login(['--username', 'bob', '--password-stdin', tokenReg.host], dir, 'b0b:token');
  t.equal(untrusted.code, 1);
  t.equal(errorOf(untrusted.logs)?.code, 'ERR_REGISTRY_TLS', 'an unverified certificate is refused');
  t.notOk(existsSync(join(dir, 'config.json')));
  const r = await login(['--ca-file', tokenReg.caFile!, '--username', 'bob', '--password-stdin', `https://${tokenReg.host}/v2/`], dir, 'b0b:token\r\n');
  t.equal(r.code, 0, r.stderr);
  const asked = issuer.requests.slice(before);
  t.ok(
    asked.some((q) => q.user === 'bob' && q.scopes.length === 0),
    'a token with no scope, as bob',
  );
  t.strictSame(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), { auths: { [tokenReg.host]: { auth: b64('bob:b0b:token') } } }, 'CRLF trimmed');
  const bad = dockerDir(t);
  const refused = await login(['--ca-file', tokenReg.caFile!, '-u', 'bob', '--password-stdin', tokenReg.host], bad, 'nope');
  t.equal(refused.code, 1);
  t.equal(errorOf(refused.logs)?.code, 'ERR_REGISTRY_UNAUTHORIZED');
  t.match(errorOf(refused.logs)?.message, /login to .* as bob refused/);
  t.notOk(existsSync(join(bad, 'config.json')));
});

t.test('a registry open to anyone: stored as docker does, with a warning that nothing was checked', async (t) => {
  const open = await startRegistry();
  t.teardown(() => open.stop());
  const dir = dockerDir(t);
  const r = await login(['-u', 'anyone', '--password-stdin', open.host], dir, 'anything');
  t.equal(r.code, 0, r.stderr);
  t.match(r.logs.find((l) => l.level === 'warn')?.message, /did not ask for credentials/);
  t.ok(existsSync(join(dir, 'config.json')));
  const checked = await login(['-u', 'alice', '--password-stdin', basicReg.host], dir, 's3cret pass');
  t.notOk(
    checked.logs.some((l) => l.level === 'warn'),
    'no warning where the credentials were checked',
  );
});

t.test('credsStore: the helper gets the secret, config.json only the entry', async (t) => {
  const helper = fakeHelper(t, 'fake');
  const dir = dockerDir(t, { credsStore: 'fake', auths: {} });
  const r = await login(['-u', 'alice', '--password-stdin', basicReg.host], dir, 's3cret pass', helper.path);
  t.equal(r.code, 0, r.stderr);
  t.equal(readFileSync(helper.log, 'utf8'), `store ${JSON.stringify({ ServerURL: basicReg.host, Username: 'alice', Secret: 's3cret pass' })}\n`);
  const text = readFileSync(join(dir, 'config.json'), 'utf8');
  t.notMatch(text, /s3cret|auth"/, 'no secret in config.json');
  t.strictSame(JSON.parse(text), { credsStore: 'fake', auths: { [basicReg.host]: {} } });
});

t.test('credHelpers for the registry wins over credsStore', async (t) => {
  const mine = fakeHelper(t, 'mine');
  const dir = dockerDir(t, { credsStore: 'missing-helper', credHelpers: { [basicReg.host]: 'mine' } });
  const r = await login(['-u', 'alice', '--password-stdin', basicReg.host], dir, 's3cret pass', mine.path);
  t.equal(r.code, 0, r.stderr);
  t.match(readFileSync(mine.log, 'utf8'), /^store \{"ServerURL":/);
});

t.test('a helper that is missing or fails: ERR_AUTH_HELPER, config.json untouched', async (t) => {
  const dir = dockerDir(t, { credsStore: 'not-installed' });
  const text = readFileSync(join(dir, 'config.json'), 'utf8');
  const r = await login(['-u', 'alice', '--password-stdin', basicReg.host], dir, 's3cret pass');
  t.equal(r.code, 1);
  t.equal(errorOf(r.logs)?.code, 'ERR_AUTH_HELPER');
  t.equal(readFileSync(join(dir, 'config.json'), 'utf8'), text);
});

t.test('config.json through a symlink: the target is rewritten, the link kept', async (t) => {
  const dir = dockerDir(t);
  const real = join(t.testdirName, 'real-config.json');
  writeFileSync(real, '{"psFormat":"table {{.ID}}"}');
  symlinkSync(real, join(dir, 'config.json'));
  const r = await login(['-u', 'alice', '--password-stdin', basicReg.host], dir, 's3cret pass');
  t.equal(r.code, 0, r.stderr);
  t.ok(lstatSync(join(dir, 'config.json')).isSymbolicLink());
  t.strictSame(JSON.parse(readFileSync(real, 'utf8')), { psFormat: 'table {{.ID}}', auths: { [basicReg.host]: { auth: b64('alice:s3cret pass') } } });
});

t.test('a malformed config.json is reported and left alone', async (t) => {
  const dir = dockerDir(t);
  writeFileSync(join(dir, 'config.json'), '{"auths": ');
  const r = await login(['-u', 'alice', '--password-stdin', basicReg.host], dir, 's3cret pass');
  t.equal(r.code, 1);
  t.equal(errorOf(r.logs)?.code, 'ERR_AUTH_HELPER');
  t.equal(readFileSync(join(dir, 'config.json'), 'utf8'), '{"auths": ');
});

t.test('usage errors exit 2 before anything is sent', async (t) => {
  const dir = dockerDir(t);
  const cases: [string[], string | undefined, string][] = [
    [['--frobnicate', basicReg.host], undefined, 'unknown flag'],
    [['--password-stdin', basicReg.host], 'pw', '--password-stdin without --username'],
    [['-u', 'a', '-p', 'x', '--password-stdin', basicReg.host], 'pw', '-p with --password-stdin'],
    [['-u', 'alice', basicReg.host], '', 'no terminal to ask on'],
    [['-u', 'alice', '--password-stdin', 'not a host!'], 'pw', 'not a registry'],
  ];
  for (const [args, input, why] of cases) {
    const r = await login(args, dir, input);
    t.equal(r.code, 2, why);
    t.equal(errorOf(r.logs)?.code, 'ERR_USAGE', why);
  }
  t.notOk(existsSync(join(dir, 'config.json')));
});

t.test('on a terminal (a real pty through script(1)): asked for, the password not echoed', async (t) => {
  const dir = dockerDir(t);
  const command = `${process.execPath} ${toolPath('img-login')} ${basicReg.host}`;
  const child = spawn('script', ['-qec', command, '/dev/null'], {
    env: { PATH: process.env.PATH, HOME: '/nonexistent-home', DOCKER_CONFIG: dir, TERM: 'dumb' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let shown = '';
  let answered = 0;
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    shown += d;
    // Each answer only once its question is on the screen: typed earlier, the pty would echo it.
    if (answered === 0 && shown.includes('Username: ')) {
      answered = 1;
      child.stdin.write('alice\r');
    } else if (answered === 1 && shown.includes('Password: ')) {
      answered = 2;
      child.stdin.write('s3cret pass\r');
    }
  });
  // A prompt that never comes must not hang the suite.
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearTimeout(timer);
  t.equal(code, 0, shown);
  t.match(shown, /Username: alice/);
  t.notMatch(shown, /s3cret/, 'the password never shows');
  t.strictSame(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')), { auths: { [basicReg.host]: { auth: b64('alice:s3cret pass') } } });
});
