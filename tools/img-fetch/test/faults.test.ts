/**
 * A fault-injecting loopback proxy in front of a real registry (with basic
 * auth): downloads cut midway are resumed with Range (in the same run and in
 * the next one), 5xx/429 are retried, a registry that lies about content is
 * caught with nothing stored, and redirects to another host (blob storage)
 * are followed without forwarding credentials.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rawManifest, startBlobHost, type FaultAction, type FaultProxy, type ProxiedRequest, type TestRegistry } from '../../../test/helpers/registry.js';
import { startAuthProxy, withRule as withProxyRule, type AuthProxy } from './auth-proxy.js';
import { runFetch } from './run.js';

let reg: TestRegistry;
let proxy: FaultProxy;
let manifestDigest: string;
let configDigest: string;
let layerDigest: string;
let layerSize: number;
let dockerConfig: string;

let setup: AuthProxy;

t.before(async () => {
  setup = await startAuthProxy();
  ({ reg, proxy, dockerConfig } = setup);
  const raw = await rawManifest(reg, 'bb:latest');
  const manifest = JSON.parse(raw.body.toString('utf8'));
  manifestDigest = raw.digest;
  configDigest = manifest.config.digest;
  layerDigest = manifest.layers[0].digest;
  layerSize = manifest.layers[0].size;
});
t.teardown(() => setup?.stop());

const ref = () => `${proxy.host}/bb:latest`;
const isLayerGet = (r: ProxiedRequest) => r.method === 'GET' && r.url === `/v2/bb/blobs/${layerDigest}`;
const fetch = (root: string, extra: string[] = []) =>
  runFetch(['--root', root, '--log-format=json', ...extra, ref()], { env: { DOCKER_CONFIG: dockerConfig } });
const errorCode = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error')?.code;
const fileDigest = (path: string) => `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;

/** Installs a rule for one test and returns the requests the proxy sees meanwhile. */
const withRule = (t: { teardown(fn: () => void): void }, rule: (req: ProxiedRequest, n: number) => FaultAction) => withProxyRule(proxy, t, rule);

t.test('a download cut midway resumes with Range in the same run', async (t) => {
  const root = t.testdir();
  const seen = withRule(t, (req, n) => (isLayerGet(req) && n === 0 ? { kind: 'cut', bytes: Math.floor(layerSize * 0.4) } : { kind: 'pass' }));
  const r = await fetch(root);
  t.equal(r.code, 0, r.stderr);
  const gets = seen().filter(isLayerGet);
  t.equal(gets.length, 2, 'one cut request, one resumed request');
  t.equal(gets[0].headers.range, undefined);
  const range = /^bytes=(\d+)-$/.exec(String(gets[1].headers.range));
  t.ok(range, `the second request asks for a range (${gets[1].headers.range})`);
  t.ok(range && Number(range[1]) > 0 && Number(range[1]) <= Math.floor(layerSize * 0.4), 'from where the first one stopped');
  t.equal(fileDigest(join(root, 'blobs', 'sha256', layerDigest.slice(7))), layerDigest);
  t.match(r.stderr, /resuming/);
});

t.test('a partial download survives a failed run and the next run resumes it', async (t) => {
  const root = t.testdir();
  withRule(t, (req) => {
    if (!isLayerGet(req)) return { kind: 'pass' };
    return req.headers.range ? { kind: 'status', status: 503, headers: { 'retry-after': '0' } } : { kind: 'cut', bytes: Math.floor(layerSize / 2) };
  });
  const failed = await fetch(root, ['--pull=always']);
  t.equal(failed.code, 1);
  t.equal(errorCode(failed.logs), 'ERR_REGISTRY_UNAVAILABLE');
  const partial = join(root, 'ingest', layerDigest.slice(7));
  t.ok(existsSync(partial), 'the partial download is kept');
  const kept = statSync(partial).size;
  t.ok(kept > 0 && kept < layerSize);
  t.notOk(existsSync(join(root, 'blobs', 'sha256', layerDigest.slice(7))), 'nothing under the digest yet');

  const seen = withRule(t, () => ({ kind: 'pass' }));
  const r = await fetch(root);
  t.equal(r.code, 0, r.stderr);
  const gets = seen().filter(isLayerGet);
  t.equal(gets.length, 1);
  t.equal(gets[0].headers.range, `bytes=${kept}-`, 'the next run asks only for the rest');
  t.equal(fileDigest(join(root, 'blobs', 'sha256', layerDigest.slice(7))), layerDigest);
  t.notOk(existsSync(partial));
});

t.test('a corrupt partial download is thrown away and fetched again from the start', async (t) => {
  const root = t.testdir();
  mkdirSync(join(root, 'ingest'), { recursive: true });
  writeFileSync(join(root, 'ingest', layerDigest.slice(7)), Buffer.alloc(1000, 0x41));
  const seen = withRule(t, () => ({ kind: 'pass' }));
  const r = await fetch(root);
  t.equal(r.code, 0, r.stderr);
  const gets = seen().filter(isLayerGet);
  t.strictSame(
    gets.map((g) => g.headers.range),
    ['bytes=1000-', undefined],
  );
  t.equal(fileDigest(join(root, 'blobs', 'sha256', layerDigest.slice(7))), layerDigest);
});

t.test('5xx and 429 are retried', async (t) => {
  const root = t.testdir();
  const seen = withRule(t, (req, n) => {
    if (req.url.startsWith('/v2/bb/manifests/') && n < 2) return { kind: 'status', status: 503 };
    if (req.url === `/v2/bb/blobs/${configDigest}` && n === 0) return { kind: 'status', status: 429, headers: { 'retry-after': '0' } };
    if (isLayerGet(req) && n === 0) return { kind: 'status', status: 500 };
    return { kind: 'pass' };
  });
  const r = await fetch(root);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.records.at(-1)?.digest, manifestDigest);
  const manifestGets = seen().filter((q) => q.url.startsWith('/v2/bb/manifests/'));
  t.equal(manifestGets.length, 4, 'two 503s, the auth challenge, then success');
  t.equal(seen().filter((q) => q.url === `/v2/bb/blobs/${configDigest}`).length, 2);
  t.equal(seen().filter(isLayerGet).length, 2);
});

t.test('429 that does not stop is ERR_REGISTRY_RATE_LIMITED', async (t) => {
  const root = t.testdir();
  const seen = withRule(t, (req) =>
    req.url.startsWith('/v2/bb/manifests/') ? { kind: 'status', status: 429, headers: { 'retry-after': '0' } } : { kind: 'pass' },
  );
  const r = await fetch(root);
  t.equal(r.code, 1);
  t.equal(errorCode(r.logs), 'ERR_REGISTRY_RATE_LIMITED');
  t.equal(seen().filter((q) => q.url.startsWith('/v2/bb/manifests/')).length, 5, 'the first attempt and four retries');
});

t.test('a registry that lies: ERR_DIGEST_MISMATCH and nothing stored under the digest', async (t) => {
  const cases: { name: string; match: (req: ProxiedRequest) => boolean; digest: () => string }[] = [
    { name: 'layer', match: isLayerGet, digest: () => layerDigest },
    { name: 'config', match: (req) => req.url === `/v2/bb/blobs/${configDigest}`, digest: () => configDigest },
    { name: 'manifest', match: (req) => req.url.startsWith('/v2/bb/manifests/'), digest: () => manifestDigest },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const root = t.testdir();
      withRule(t, (req) => (c.match(req) ? { kind: 'corrupt' } : { kind: 'pass' }));
      const r = await fetch(root);
      t.equal(r.code, 1);
      t.equal(errorCode(r.logs), 'ERR_DIGEST_MISMATCH');
      t.notOk(existsSync(join(root, 'blobs', 'sha256', c.digest().slice(7))), 'no blob under the digest');
      t.notOk(existsSync(join(root, 'ingest', c.digest().slice(7))), 'no partial of it left');
      const index = existsSync(join(root, 'index.json')) ? JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')) : { manifests: [] };
      t.strictSame(index.manifests, [], 'no image tagged');
      t.equal(r.records.filter((x) => x.type === 'image').length, 0);
    });
  }
});

t.test('a redirect to another host is followed without the credentials', async (t) => {
  const blobHost = await startBlobHost(reg);
  t.teardown(() => blobHost.stop());
  const root = t.testdir();
  const seen = withRule(t, (req) =>
    isLayerGet(req) ? { kind: 'redirect', status: 307, location: `${blobHost.url}/blobs/bb/${layerDigest}` } : { kind: 'pass' },
  );
  const r = await fetch(root);
  t.equal(r.code, 0, r.stderr);
  t.equal(fileDigest(join(root, 'blobs', 'sha256', layerDigest.slice(7))), layerDigest);
  t.equal(blobHost.requests.length, 1, 'the blob came from the other host');
  t.equal(blobHost.requests[0].headers.authorization, undefined, 'no Authorization sent to it');
  t.match(
    seen()
      .filter(isLayerGet)
      .map((q) => q.headers.authorization),
    [/^Basic /],
    'the registry itself got the credentials',
  );
});

t.test('a registry that refuses HEAD: the re-pull GETs the manifest instead', async (t) => {
  const root = t.testdir();
  t.equal((await fetch(root)).code, 0);
  const seen = withRule(t, (req) => (req.method === 'HEAD' ? { kind: 'status', status: 405 } : { kind: 'pass' }));
  const r = await fetch(root);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.records.at(-1)?.digest, manifestDigest);
  t.ok(
    seen().some((q) => q.method === 'HEAD'),
    'HEAD was tried',
  );
  t.ok(
    seen().some((q) => q.method === 'GET' && q.url === '/v2/bb/manifests/latest'),
    'then GET',
  );
  t.equal(seen().filter(isLayerGet).length, 0, 'no layer downloaded again');
});
