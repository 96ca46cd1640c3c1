/**
 * The registry client's pure parts, table-driven: WWW-Authenticate parsing,
 * token responses, config.json credential lookup (with a real helper script),
 * manifest classification and platform selection (backoff and the retry loop
 * are retry.test.ts). The HTTP paths are tested
 * end to end against a real registry in tools/img-fetch/test.
 */
import t from 'tap';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseChallenge, parseTokenResponse, repositoryScope } from '../src/auth.js';
import { configKey, keyHostname, lookupCredentials } from '../src/credentials.js';
import { parseManifest, selectPlatform, type IndexEntry } from '../src/manifest.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;

t.test('parseChallenge', async (t) => {
  const cases: [string | undefined, unknown][] = [
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
      },
    ],
    ['Basic realm="Registry Realm"', { scheme: 'basic', params: { realm: 'Registry Realm' } }],
    [
      'bearer realm="http://127.0.0.1:5001/token", service="svc", scope="repository:a/b:pull,push"',
      {
        scheme: 'bearer',
        params: { realm: 'http://127.0.0.1:5001/token', service: 'svc', scope: 'repository:a/b:pull,push' },
      },
    ],
    ['Bearer realm=https://x/token,service=reg', { scheme: 'bearer', params: { realm: 'https://x/token', service: 'reg' } }],
    ['Bearer realm="a \\"quoted\\" realm"', { scheme: 'bearer', params: { realm: 'a "quoted" realm' } }],
    ['Basic', { scheme: 'basic', params: {} }],
    [undefined, undefined],
    ['', undefined],
  ];
  for (const [header, expected] of cases) t.strictSame(parseChallenge(header), expected, String(header));
});

t.test('parseTokenResponse', async (t) => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.match(parseTokenResponse('{"token":"abc","expires_in":300}', now), { token: 'abc', expiresAt: now + 295_000 });
  t.match(parseTokenResponse('{"access_token":"xyz"}', now), { token: 'xyz', expiresAt: now + 55_000 }, 'expires_in defaults to 60 s');
  t.match(parseTokenResponse('{"token":"abc","expires_in":120,"issued_at":"2026-01-01T00:00:10Z"}', now), { expiresAt: now + 10_000 + 115_000 });
  t.equal(parseTokenResponse('{"nothing":1}', now), undefined);
  t.equal(parseTokenResponse('not json', now), undefined);
  t.equal(repositoryScope('library/alpine'), 'repository:library/alpine:pull');
});

t.test('config.json keys', async (t) => {
  t.equal(configKey('docker.io'), 'https://index.docker.io/v1/');
  t.equal(configKey('127.0.0.1:5000'), '127.0.0.1:5000');
  const hosts: [string, string][] = [
    ['https://index.docker.io/v1/', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
    ['http://localhost:5000', 'localhost:5000'],
    ['https://ghcr.io/v2/', 'ghcr.io'],
    ['quay.io', 'quay.io'],
  ];
  for (const [key, host] of hosts) t.equal(keyHostname(key), host, key);
});

t.test('lookupCredentials', async (t) => {
  const dir = t.testdir();
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const helper = join(bin, 'docker-credential-fake');
  writeFileSync(
    helper,
    `#!/bin/sh
read -r server || true
case "$server" in
  https://index.docker.io/v1/) echo '{"Username":"hubuser","Secret":"hubpass"}' ;;
  tok.example) echo '{"Username":"<token>","Secret":"refresh-me"}' ;;
  broken.example) echo 'boom' >&2; exit 3 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`,
  );
  chmodSync(helper, 0o755);
  const write = (name: string, config: object) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'config.json'), JSON.stringify(config));
    return d;
  };
  const env = { PATH: `${bin}:${process.env.PATH}` };
  const plain = write('plain', {
    auths: {
      'reg.example:5000': { auth: b64('u:p:with:colons') },
      'https://index.docker.io/v1/': { auth: b64('hub:secret') },
      'http://other.example/v2/': { username: 'o', password: 'pw' },
      'idt.example': { auth: '', identitytoken: 'tok123' },
      'empty.example': {},
    },
  });
  const cases: [string, string, object | undefined][] = [
    ['plain', 'reg.example:5000', { username: 'u', password: 'p:with:colons' }],
    ['plain', 'docker.io', { username: 'hub', password: 'secret' }],
    ['plain', 'other.example', { username: 'o', password: 'pw' }],
    ['plain', 'idt.example', { identityToken: 'tok123' }],
    ['plain', 'empty.example', undefined],
    ['plain', 'unknown.example', undefined],
  ];
  const helpers = write('helpers', {
    credsStore: 'fake',
    credHelpers: { 'tok.example': 'fake', 'broken.example': 'fake' },
    auths: { 'fallback.example': { auth: b64('f:b') } },
  });
  cases.push(
    ['helpers', 'docker.io', { username: 'hubuser', password: 'hubpass', source: 'docker-credential-fake' }],
    ['helpers', 'tok.example', { identityToken: 'refresh-me' }],
    ['helpers', 'nothere.example', undefined],
    ['helpers', 'fallback.example', { username: 'f', password: 'b' }],
  );
  for (const [name, registry, expected] of cases) {
    const creds = await lookupCredentials(registry, { env, configDir: join(dir, name) });
    if (expected === undefined) t.equal(creds, undefined, `${name} ${registry}`);
    else t.match(creds, expected, `${name} ${registry}`);
  }
  void plain;
  void helpers;
  await t.rejects(lookupCredentials('broken.example', { env, configDir: join(dir, 'helpers') }), { code: 'ERR_AUTH_HELPER' });
  t.equal(await lookupCredentials('x.example', { env, configDir: join(dir, 'absent') }), undefined, 'no config.json: anonymous');
  const bad = write('bad', {});
  writeFileSync(join(bad, 'config.json'), '{not json');
  await t.rejects(lookupCredentials('x.example', { env, configDir: bad }), { code: 'ERR_AUTH_HELPER' });
  t.equal(await lookupCredentials('x.example', { env: { HOME: join(dir, 'nohome') } }), undefined, 'HOME without .docker');
});

t.test('parseManifest', async (t) => {
  const ociManifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D('a'), size: 2 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D('b'), size: 3 }],
  };
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{ mediaType: ociManifest.mediaType, digest: D('c'), size: 10, platform: { os: 'linux', architecture: 'amd64' } }],
  };
  const resp = (body: object | string, mediaType = '') => ({
    body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
    mediaType,
    digest: D('f'),
  });
  t.equal(parseManifest(resp(ociManifest, ociManifest.mediaType), 'm').kind, 'manifest');
  t.equal(parseManifest(resp(index, index.mediaType), 'i').kind, 'index');
  const { mediaType: _omit, ...bare } = index;
  void _omit;
  t.equal(parseManifest(resp(bare), 'i').kind, 'index', 'an index without mediaType is recognised by its manifests list');
  const errors: [string, object | string, string, string][] = [
    ['schema1', { schemaVersion: 1, name: 'x', fsLayers: [] }, 'application/vnd.docker.distribution.manifest.v1+prettyjws', 'ERR_MANIFEST_UNSUPPORTED'],
    ['schema1 as json', { schemaVersion: 1, name: 'x' }, 'application/json', 'ERR_MANIFEST_UNSUPPORTED'],
    ['not json', '{oops', '', 'ERR_MANIFEST_INVALID'],
    ['array', '[]', '', 'ERR_MANIFEST_INVALID'],
    ['type disagreement', ociManifest, 'application/vnd.docker.distribution.manifest.v2+json', 'ERR_MANIFEST_INVALID'],
    [
      'bad layer digest',
      { ...ociManifest, layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: 'sha256:xyz', size: 1 }] },
      '',
      'ERR_INPUT_RECORD',
    ],
    ['unknown layer type', { ...ociManifest, layers: [{ mediaType: 'text/plain', digest: D('b'), size: 1 }] }, '', 'ERR_MANIFEST_UNSUPPORTED'],
    ['bad platform', { ...index, manifests: [{ ...index.manifests[0], platform: 'linux' }] }, index.mediaType, 'ERR_MANIFEST_INVALID'],
  ];
  for (const [name, body, type, code] of errors) t.throws(() => parseManifest(resp(body, type), name), { code }, name);
});

t.test('selectPlatform', async (t) => {
  const entry = (c: string, os: string, architecture: string, variant?: string): IndexEntry => ({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: D(c),
    size: 1,
    platform: { os, architecture, ...(variant ? { variant } : {}) },
  });
  const list = [
    entry('1', 'unknown', 'unknown'),
    entry('2', 'linux', 'amd64'),
    entry('3', 'linux', 'arm', 'v6'),
    entry('4', 'linux', 'arm', 'v7'),
    entry('5', 'linux', 'arm64', 'v8'),
    entry('6', 'windows', 'amd64'),
  ];
  const cases: [object, string][] = [
    [{ os: 'linux', architecture: 'amd64' }, D('2')],
    [{ os: 'linux', architecture: 'arm', variant: 'v7' }, D('4')],
    [{ os: 'linux', architecture: 'arm', variant: 'v6' }, D('3')],
    [{ os: 'linux', architecture: 'arm64' }, D('5')],
    [{ os: 'linux', architecture: 'arm64', variant: 'v8' }, D('5')],
    [{ os: 'windows', architecture: 'amd64' }, D('6')],
  ];
  for (const [wanted, digest] of cases) t.equal(selectPlatform(list, wanted as never, 'x').digest, digest, JSON.stringify(wanted));
  t.equal(
    selectPlatform([entry('7', 'linux', 'arm64')], { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'x').digest,
    D('7'),
    'arm64 without variant is v8',
  );
  t.throws(() => selectPlatform(list, { os: 'linux', architecture: 's390x' }, 'x'), { code: 'ERR_PLATFORM_NOT_FOUND' });
  t.throws(() => selectPlatform(list, { os: 'unknown', architecture: 'unknown', variant: 'z' }, 'x'), { code: 'ERR_PLATFORM_NOT_FOUND' });
});
