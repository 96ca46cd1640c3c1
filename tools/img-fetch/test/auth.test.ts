/**
 * Every auth mode against a real registry: anonymous (the other test files),
 * htpasswd basic auth, bearer tokens from the test token issuer (with scope),
 * credentials from a DOCKER_CONFIG directory's config.json and from a
 * `docker-credential-test` helper on PATH; and TLS: refused when unverified,
 * accepted with --insecure, --ca-file or SSL_CERT_FILE.
 */
import t from 'tap';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import { pushImage, rawManifest, startRegistry } from '../../../test/helpers/registry.js';
import { runFetch } from './run.js';

function dockerConfig(dir: string, config: object): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** A fake credential helper that knows one server and logs what it was asked. */
function credentialHelper(dir: string, server: string, user: string, secret: string): { binDir: string; log: string } {
  const binDir = join(dir, 'bin');
  const log = join(dir, 'helper.log');
  mkdirSync(binDir, { recursive: true });
  const script = join(binDir, 'docker-credential-test');
  writeFileSync(
    script,
    `#!/bin/sh
read -r server || true
echo "$1 $server" >> '${log}'
if [ "$1" = get ] && [ "$server" = '${server}' ]; then
  printf '{"ServerURL":"%s","Username":"${user}","Secret":"${secret}"}\\n' "$server"
  exit 0
fi
echo 'credentials not found in native keychain'
exit 1
`,
  );
  chmodSync(script, 0o755);
  return { binDir, log };
}

const errorCode = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error')?.code;

t.test('basic auth (htpasswd)', async (t) => {
  const reg = await startRegistry({ htpasswd: { alice: 's3cret' } });
  t.teardown(() => reg.stop());
  await pushImage(`${busyboxLayout()}:latest`, reg, 'private/bb:latest');
  const digest = (await rawManifest(reg, 'private/bb:latest')).digest;
  const ref = `${reg.host}/private/bb:latest`;
  const dir = t.testdir();

  t.test('without credentials: ERR_REGISTRY_UNAUTHORIZED with a login hint', async (t) => {
    const r = await runFetch(['--root', join(dir, 'r0'), '--log-format=json', ref]);
    t.equal(r.code, 1);
    t.equal(errorCode(r.logs), 'ERR_REGISTRY_UNAUTHORIZED');
    t.match(r.logs.find((l) => l.level === 'error')!.hint, /docker login|config\.json/);
  });

  const cases: { name: string; config: object; ok: boolean }[] = [
    { name: 'auths with base64 auth', config: { auths: { [reg.host]: { auth: b64('alice:s3cret') } } }, ok: true },
    { name: 'auths keyed by URL', config: { auths: { [`https://${reg.host}/v2/`]: { auth: b64('alice:s3cret') } } }, ok: true },
    { name: 'auths with username and password', config: { auths: { [reg.host]: { username: 'alice', password: 's3cret' } } }, ok: true },
    { name: 'a wrong password', config: { auths: { [reg.host]: { auth: b64('alice:wrong') } } }, ok: false },
    { name: 'credentials for another registry only', config: { auths: { 'example.com': { auth: b64('alice:s3cret') } } }, ok: false },
  ];
  for (const c of cases) {
    t.test(`DOCKER_CONFIG: ${c.name}`, async (t) => {
      const work = t.testdir();
      const configDir = dockerConfig(join(work, 'docker'), c.config);
      const r = await runFetch(['--root', join(work, 'root'), '--log-format=json', ref], { env: { DOCKER_CONFIG: configDir } });
      if (c.ok) {
        t.equal(r.code, 0, r.stderr);
        t.equal(r.records.at(-1)?.digest, digest);
      } else {
        t.equal(r.code, 1);
        t.equal(errorCode(r.logs), 'ERR_REGISTRY_UNAUTHORIZED');
      }
    });
  }

  t.test('~/.docker/config.json when DOCKER_CONFIG is unset', async (t) => {
    const work = t.testdir();
    const home = work;
    dockerConfig(join(home, '.docker'), { auths: { [reg.host]: { auth: b64('alice:s3cret') } } });
    const r = await runFetch(['--root', join(home, 'root'), ref], { env: { HOME: home, DOCKER_CONFIG: undefined } });
    t.equal(r.code, 0, r.stderr);
  });

  for (const key of ['credHelpers', 'credsStore'] as const) {
    t.test(`credential helper via ${key}`, async (t) => {
      const work = t.testdir();
      const helper = credentialHelper(work, reg.host, 'alice', 's3cret');
      const config = key === 'credHelpers' ? { credHelpers: { [reg.host]: 'test' } } : { credsStore: 'test', auths: { [reg.host]: {} } };
      const configDir = dockerConfig(join(work, 'docker'), config);
      const r = await runFetch(['--root', join(work, 'root'), ref], { env: { DOCKER_CONFIG: configDir, PATH: `${helper.binDir}:${process.env.PATH}` } });
      t.equal(r.code, 0, r.stderr);
      t.equal(r.records.at(-1)?.digest, digest);
      t.equal(readFileSync(helper.log, 'utf8'), `get ${reg.host}\n`, 'the helper was asked once, with the server on stdin');
    });
  }

  t.test('a helper that is missing is ERR_AUTH_HELPER', async (t) => {
    const work = t.testdir();
    const configDir = dockerConfig(join(work, 'docker'), { credHelpers: { [reg.host]: 'nosuchhelper' } });
    const r = await runFetch(['--root', join(work, 'root'), '--log-format=json', ref], { env: { DOCKER_CONFIG: configDir } });
    t.equal(r.code, 1);
    t.equal(errorCode(r.logs), 'ERR_AUTH_HELPER');
  });
});

t.test('bearer tokens (the Docker Hub flow)', async (t) => {
  const reg = await startRegistry({ token: { users: { bob: 'hunter2' }, refreshTokens: { 'refresh-bob-1': 'bob' }, anonymousPull: false } });
  t.teardown(() => reg.stop());
  await pushImage(`${busyboxLayout()}:v2`, reg, 'team/bb:v2');
  const digest = (await rawManifest(reg, 'team/bb:v2')).digest;
  const ref = `${reg.host}/team/bb:v2`;
  const issuer = reg.tokenIssuer!;

  t.test('without credentials the token server refuses: ERR_REGISTRY_UNAUTHORIZED', async (t) => {
    const work = t.testdir();
    const r = await runFetch(['--root', join(work, 'root'), '--log-format=json', ref]);
    t.equal(r.code, 1);
    t.equal(errorCode(r.logs), 'ERR_REGISTRY_UNAUTHORIZED');
  });

  t.test('with credentials: one token for the repository pull scope, reused for every request', async (t) => {
    const work = t.testdir();
    const configDir = dockerConfig(join(work, 'docker'), { auths: { [reg.host]: { auth: b64('bob:hunter2') } } });
    const before = issuer.requests.length;
    const r = await runFetch(['--root', join(work, 'root'), ref], { env: { DOCKER_CONFIG: configDir } });
    t.equal(r.code, 0, r.stderr);
    t.equal(r.records.at(-1)?.digest, digest);
    const mine = issuer.requests.slice(before);
    t.equal(mine.length, 1, 'one token request for manifest, config and two layers');
    t.strictSame(mine[0].scopes, ['repository:team/bb:pull']);
    t.equal(mine[0].service, issuer.service);
    t.equal(mine[0].user, 'bob');
  });

  t.test('an identity token is exchanged with the OAuth2 refresh-token grant', async (t) => {
    const work = t.testdir();
    const configDir = dockerConfig(join(work, 'docker'), { auths: { [reg.host]: { auth: '', identitytoken: 'refresh-bob-1' } } });
    const before = issuer.requests.length;
    const r = await runFetch(['--root', join(work, 'root'), ref], { env: { DOCKER_CONFIG: configDir } });
    t.equal(r.code, 0, r.stderr);
    const mine = issuer.requests.slice(before);
    t.equal(mine.length, 1);
    t.match(mine[0], { method: 'POST', user: 'bob', scopes: ['repository:team/bb:pull'], authorization: undefined });
  });

  t.test('a wrong password is ERR_REGISTRY_UNAUTHORIZED', async (t) => {
    const work = t.testdir();
    const configDir = dockerConfig(join(work, 'docker'), { auths: { [reg.host]: { auth: b64('bob:nope') } } });
    const r = await runFetch(['--root', join(work, 'root'), '--log-format=json', ref], { env: { DOCKER_CONFIG: configDir } });
    t.equal(r.code, 1);
    t.equal(errorCode(r.logs), 'ERR_REGISTRY_UNAUTHORIZED');
  });
});

t.test('bearer tokens for anonymous pulls', async (t) => {
  const work = t.testdir();
  const reg = await startRegistry({ token: { users: { bob: 'hunter2' }, anonymousPull: true } });
  t.teardown(() => reg.stop());
  await pushImage(`${busyboxLayout()}:latest`, reg, 'public/bb:latest');
  const before = reg.tokenIssuer!.requests.length;
  const r = await runFetch(['--root', join(work, 'root'), `${reg.host}/public/bb:latest`]);
  t.equal(r.code, 0, r.stderr);
  const mine = reg.tokenIssuer!.requests.slice(before);
  t.equal(mine.length, 1);
  t.equal(mine[0].authorization, undefined, 'no credentials sent');
  t.strictSame(mine[0].scopes, ['repository:public/bb:pull']);
});

t.test('TLS', async (t) => {
  const reg = await startRegistry({ tls: true });
  t.teardown(() => reg.stop());
  await pushImage(`${busyboxLayout()}:latest`, reg, 'bb:latest');
  const ref = `${reg.host}/bb:latest`;

  t.test('an unverifiable certificate is refused, not silently accepted (no fallback to HTTP)', async (t) => {
    const work = t.testdir();
    const r = await runFetch(['--root', join(work, 'root'), '--log-format=json', ref]);
    t.equal(r.code, 1);
    const error = r.logs.find((l) => l.level === 'error')!;
    t.equal(error.code, 'ERR_REGISTRY_TLS');
    t.match(error.hint, /--insecure/);
  });
  const ok: { name: string; args: string[]; env: NodeJS.ProcessEnv }[] = [
    { name: '--insecure', args: ['--insecure'], env: {} },
    { name: '--ca-file', args: ['--ca-file', reg.caFile!], env: {} },
    { name: 'SSL_CERT_FILE', args: [], env: { SSL_CERT_FILE: reg.caFile! } },
    { name: '--insecure-registry for this host', args: ['--insecure-registry', reg.host], env: {} },
    { name: 'CONVEYOR_INSECURE_REGISTRIES', args: [], env: { CONVEYOR_INSECURE_REGISTRIES: `other.example:5000,${reg.host}` } },
  ];
  for (const c of ok) {
    t.test(`accepted with ${c.name}`, async (t) => {
      const work = t.testdir();
      const r = await runFetch(['--root', join(work, 'root'), ...c.args, ref], { env: c.env });
      t.equal(r.code, 0, r.stderr);
      t.equal(r.records.at(-1)?.type, 'image');
    });
  }
  t.test('--insecure-registry for another host leaves this one verified', async (t) => {
    const work = t.testdir();
    const r = await runFetch(['--root', join(work, 'root'), '--log-format=json', '--insecure-registry', '127.0.0.1:1', ref]);
    t.equal(r.code, 1);
    t.equal(errorCode(r.logs), 'ERR_REGISTRY_TLS');
  });
  t.test('--plain-http against a TLS registry fails cleanly', async (t) => {
    const work = t.testdir();
    const r = await runFetch(['--root', join(work, 'root'), '--log-format=json', '--plain-http', ref]);
    t.equal(r.code, 1);
    t.match(errorCode(r.logs), /^ERR_REGISTRY_/);
  });
});
