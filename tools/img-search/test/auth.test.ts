/**
 * img-search against a real registry with token auth (the test token
 * issuer): the catalog needs a token with the registry:catalog:* scope, got
 * with the credentials in DOCKER_CONFIG's config.json as img-fetch gets
 * them; anonymous is refused with ERR_REGISTRY_UNAUTHORIZED; tags are read
 * with a pull token on the repository. The registry speaks TLS: --ca-file
 * is needed, an untrusted certificate is ERR_REGISTRY_TLS.
 */
import t from 'tap';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import { pushImage, startRegistry } from '../../../test/helpers/registry.js';
import { runTool } from '../../../test/helpers/tools.js';

// TLS too: the TLS flags reach the client (its own TLS behaviour is img-fetch's tests').
const reg = await startRegistry({ tls: true, token: { users: { alice: 'wonder land' } } });
t.teardown(() => reg.stop());
await pushImage(`${busyboxLayout()}:latest`, reg, 'private/app:v1');
const issuer = reg.tokenIssuer!;
const configDir = join(t.testdirName, 'docker');
mkdirSync(configDir, { recursive: true });
t.teardown(() => rmSync(t.testdirName, { recursive: true, force: true }));
writeFileSync(join(configDir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from('alice:wonder land').toString('base64') } } }));
const run = (args: string[], dockerConfig: string, trust = true) =>
  runTool('img-search', trust ? ['--ca-file', reg.caFile!, ...args] : args, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: dockerConfig },
  });
const errorOf = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error');

t.test('anonymous: the catalog is refused (ERR_REGISTRY_UNAUTHORIZED, exit 1)', async (t) => {
  const r = await run([`${reg.host}/`, '--log-format=json'], '/nonexistent-docker-config');
  t.equal(r.code, 1);
  t.equal(errorOf(r.logs)?.code, 'ERR_REGISTRY_UNAUTHORIZED');
  t.equal(r.stdout, '');
});

t.test('with credentials: a registry:catalog:* token lists the catalog', async (t) => {
  const before = issuer.requests.length;
  const r = await run([`${reg.host}/`], configDir);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records.map((x) => x.name),
    [`${reg.host}/private/app`],
  );
  const asked = issuer.requests.slice(before);
  t.ok(
    asked.some((q) => q.user === 'alice' && q.scopes.includes('registry:catalog:*')),
    'the token was asked for the catalog scope, as alice',
  );
});

t.test('an untrusted certificate: ERR_REGISTRY_TLS', async (t) => {
  const r = await run([`${reg.host}/`, '--log-format=json'], configDir, false);
  t.equal(r.code, 1);
  t.equal(errorOf(r.logs)?.code, 'ERR_REGISTRY_TLS');
});

t.test('with credentials: tags and digests with a pull token', async (t) => {
  const before = issuer.requests.length;
  const r = await run(['--tags', '--digests', `${reg.host}/private/app`], configDir);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(
    r.records.map((x) => x.ref),
    [`${reg.host}/private/app:v1`],
  );
  t.match(r.records[0].digest, /^sha256:[0-9a-f]{64}$/);
  t.ok(issuer.requests.slice(before).some((q) => q.scopes.includes('repository:private/app:pull')));
});
