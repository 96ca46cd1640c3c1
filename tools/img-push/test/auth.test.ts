/**
 * img-push against a token-auth registry (distribution 2.8 + the test token
 * issuer, anonymous pull allowed as on Docker Hub): with credentials from a
 * DOCKER_CONFIG the push asks for `repository:NAME:pull,push` and succeeds; a
 * push to a second repository asks for pull on the repository it mounts from
 * and mounts; without credentials (or with a wrong password) the push fails
 * with ERR_REGISTRY_UNAUTHORIZED and a hint about pushing, not pulling.
 */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { rawManifest, startRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, type ToolResult } from '../../../test/helpers/tools.js';

const reg = await startRegistry({ token: { users: { alice: 's3cret' }, anonymousPull: true } });
t.teardown(() => reg.stop());
const root = tempStore('conveyor-push-auth-');
t.teardown(() => removeStore(root));
importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/app:dev');
const local = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests[0];

const auth = (user: string, password: string) => JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } });
const errorOf = (r: ToolResult) => r.logs.find((l) => l.level === 'error');

function push(t: typeof import('tap').t, config: string | undefined, args: string[]): Promise<ToolResult> {
  const dir = config === undefined ? '/nonexistent-docker-config' : t.testdir({ 'config.json': config });
  return runTool('img-push', ['--root', root, '--log-format=json', ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: dir } });
}

t.test('with credentials: push scope asked for, the push lands', async (t) => {
  const issued = reg.tokenIssuer!.requests.length;
  const r = await push(t, auth('alice', 's3cret'), ['--to', `${reg.host}/team/app:1`, 'app:dev']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.records[0]?.digest, local.digest);
  const requests = reg.tokenIssuer!.requests.slice(issued);
  t.ok(
    requests.some((q) => q.user === 'alice' && q.scopes.includes('repository:team/app:pull,push')),
    'a token for pull,push on team/app',
  );
  t.equal((await rawManifest({ host: reg.host, creds: 'alice:s3cret' }, 'team/app:1')).digest, local.digest);
});

t.test('a second repository: the mount asks for pull on the source repository and mounts', async (t) => {
  const issued = reg.tokenIssuer!.requests.length;
  const mark = reg.logs().length;
  const r = await push(t, auth('alice', 's3cret'), ['--to', `${reg.host}/other/app:1`, `${reg.host}/team/app:1`]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.logs.find((l) => /pushed/.test(l.message ?? ''))?.message, /0 blobs uploaded \(0 bytes\), 2 mounted/);
  t.ok(
    reg.tokenIssuer!.requests.slice(issued).some((q) => q.scopes.includes('repository:other/app:pull,push') && q.scopes.includes('repository:team/app:pull')),
    'one token for pushing here and pulling from there',
  );
  t.notMatch(reg.logs().slice(mark), /"PATCH |"PUT \/v2\/other\/app\/blobs/);
});

for (const [name, config] of [
  ['no credentials', undefined],
  ['a wrong password', auth('alice', 'wrong')],
] as const) {
  t.test(`${name}: ERR_REGISTRY_UNAUTHORIZED with a push hint`, async (t) => {
    const r = await push(t, config, ['--to', `${reg.host}/denied/app:1`, 'app:dev']);
    t.equal(r.code, 1);
    t.equal(errorOf(r)?.code, 'ERR_REGISTRY_UNAUTHORIZED');
    if (config === undefined) t.match(errorOf(r)?.hint, /push/);
    t.equal(r.records.length, 0);
  });
}
