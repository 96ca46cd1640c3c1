/**
 * A registry that wastes time and disk (issue 7, "CPU and space denial of
 * service"), through the fault proxy in front of a real registry: a layer
 * declared larger than --max-blob-size and a config above the config cap are
 * refused before a byte is requested; a registry that trickles ends with
 * ERR_REGISTRY_UNAVAILABLE within a few rate windows instead of never; an
 * image that does not fit the store's file system (a small tmpfs) is refused
 * before its download starts.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import {
  pushImage,
  rawManifest,
  startFaultProxy,
  startRegistry,
  type FaultAction,
  type FaultProxy,
  type ProxiedRequest,
  type TestRegistry,
} from '../../../test/helpers/registry.js';
import { runFetch } from './run.js';

let reg: TestRegistry;
let proxy: FaultProxy;
let manifest: {
  schemaVersion: number;
  mediaType: string;
  config: { mediaType: string; digest: string; size: number };
  layers: { mediaType: string; digest: string; size: number }[];
};

t.before(async () => {
  reg = await startRegistry();
  await pushImage(`${busyboxLayout()}:latest`, reg, 'bb:latest', 'oci');
  manifest = JSON.parse((await rawManifest(reg, 'bb:latest')).body.toString('utf8'));
  proxy = await startFaultProxy(`http://${reg.host}`);
});
t.teardown(async () => {
  await proxy?.stop();
  await reg?.stop();
});

const ref = () => `${proxy.host}/bb:latest`;
const isManifestGet = (q: ProxiedRequest) => q.method === 'GET' && q.url === '/v2/bb/manifests/latest';
const isLayerGet = (q: ProxiedRequest) => q.method === 'GET' && q.url === `/v2/bb/blobs/${manifest.layers[0].digest}`;
const isConfigGet = (q: ProxiedRequest) => q.method === 'GET' && q.url === `/v2/bb/blobs/${manifest.config.digest}`;
const errorOf = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error');
const fetch = (root: string, extra: string[] = [], env: Record<string, string> = {}) =>
  runFetch(['--root', root, '--log-format=json', '--plain-http', ...extra, ref()], { env });

function withRule(t: { teardown(fn: () => void): void }, rule: (req: ProxiedRequest) => FaultAction): () => ProxiedRequest[] {
  const start = proxy.requests.length;
  proxy.rule = rule;
  t.teardown(() => {
    proxy.rule = () => ({ kind: 'pass' });
  });
  return () => proxy.requests.slice(start);
}

/** Serves a doctored copy of the real manifest for the tag. */
function serveManifest(doctored: object): (req: ProxiedRequest) => FaultAction {
  return (req) =>
    isManifestGet(req)
      ? {
          kind: 'status',
          status: 200,
          headers: { 'content-type': manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json' },
          body: JSON.stringify(doctored),
        }
      : { kind: 'pass' };
}

const ingestEmpty = (root: string) => !existsSync(join(root, 'ingest')) || readdirSync(join(root, 'ingest')).length === 0;

t.test('a layer declared larger than the maximum blob size is refused before download', async (t) => {
  const cases: { name: string; size: number; extra?: string[]; env?: Record<string, string>; code: number; error?: string }[] = [
    { name: 'a declared 64 GiB is over the 16 GiB default', size: 64 * 1024 ** 3, code: 1, error: 'ERR_LAYER_TOO_LARGE' },
    { name: '--max-blob-size 1k', size: manifest.layers[0].size, extra: ['--max-blob-size', '1k'], code: 1, error: 'ERR_LAYER_TOO_LARGE' },
    { name: 'CONVEYOR_MAX_BLOB_SIZE=1k', size: manifest.layers[0].size, env: { CONVEYOR_MAX_BLOB_SIZE: '1k' }, code: 1, error: 'ERR_LAYER_TOO_LARGE' },
    {
      name: 'the flag wins over the environment',
      size: manifest.layers[0].size,
      extra: ['--max-blob-size', '100m'],
      env: { CONVEYOR_MAX_BLOB_SIZE: '1k' },
      code: 0,
    },
    { name: '--max-blob-size 0 is a usage error', size: manifest.layers[0].size, extra: ['--max-blob-size', '0'], code: 2, error: 'ERR_USAGE' },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const root = t.testdir();
      const doctored = { ...manifest, layers: [{ ...manifest.layers[0], size: c.size }] };
      const seen = withRule(t, c.size === manifest.layers[0].size ? () => ({ kind: 'pass' }) : serveManifest(doctored));
      const r = await fetch(root, c.extra, c.env);
      t.equal(r.code, c.code, r.stderr);
      if (!c.error) return;
      const error = errorOf(r.logs);
      t.equal(error?.code, c.error);
      if (c.error !== 'ERR_LAYER_TOO_LARGE') return;
      t.match(error, { size: c.size, digest: manifest.layers[0].digest, hint: /--max-blob-size/ });
      t.equal(seen().filter(isLayerGet).length, 0, 'the layer was never requested');
      t.ok(ingestEmpty(root), 'nothing in ingest');
    });
  }
});

t.test('a config declared above the config cap is refused before download', async (t) => {
  const root = t.testdir();
  const seen = withRule(t, serveManifest({ ...manifest, config: { ...manifest.config, size: 16 * 1024 * 1024 } }));
  const r = await fetch(root);
  t.equal(r.code, 1, r.stderr);
  t.equal(errorOf(r.logs)?.code, 'ERR_MANIFEST_INVALID');
  t.match(errorOf(r.logs)?.message, /declared as 16777216 bytes/);
  t.equal(seen().filter(isConfigGet).length, 0, 'the config was never requested');
});

t.test('a registry that trickles ends with ERR_REGISTRY_UNAVAILABLE', async (t) => {
  // One byte every 100 ms restarts any idle timer for ever; 10 B/s is far
  // below the 1 KiB/s asked for here, over half-second windows.
  const limits = ['--min-rate', '1k', '--rate-window', '0.5'];
  t.test('a layer body', async (t) => {
    const root = t.testdir();
    const seen = withRule(t, (req) => (isLayerGet(req) ? { kind: 'trickle', intervalMs: 100 } : { kind: 'pass' }));
    const started = Date.now();
    const r = await fetch(root, limits);
    const seconds = (Date.now() - started) / 1000;
    t.equal(r.code, 1, r.stderr);
    const error = errorOf(r.logs);
    t.equal(error?.code, 'ERR_REGISTRY_UNAVAILABLE');
    t.match(error?.hint, /--min-rate/);
    t.equal(seen().filter(isLayerGet).length, 5, 'five slow attempts, resumed bytes or not, then it gives up');
    t.ok(seconds < 20, `ended in ${seconds} s`);
  });
  t.test('a manifest', async (t) => {
    const seen = withRule(t, (req) => (isManifestGet(req) ? { kind: 'trickle', intervalMs: 100 } : { kind: 'pass' }));
    const r = await fetch(t.testdir(), limits);
    t.equal(r.code, 1, r.stderr);
    t.equal(errorOf(r.logs)?.code, 'ERR_REGISTRY_UNAVAILABLE');
    t.ok(seen().filter(isManifestGet).length >= 1);
  });
  t.test('the same trickle above the minimum rate is only slow', async (t) => {
    withRule(t, (req) => (isManifestGet(req) ? { kind: 'trickle', intervalMs: 2 } : { kind: 'pass' }));
    const r = await fetch(t.testdir(), ['--min-rate', '20', '--rate-window', '0.5']);
    t.equal(r.code, 0, r.stderr);
  });
  t.test('--rate-window out of range is a usage error', async (t) => {
    const r = await fetch(t.testdir(), ['--rate-window', '0']);
    t.equal(r.code, 2);
    t.equal(errorOf(r.logs)?.code, 'ERR_USAGE');
  });
});

const isRoot = process.getuid?.() === 0;
t.test('an image that does not fit the store file system is refused before download', { skip: isRoot ? false : 'mounting a tmpfs needs root' }, async (t) => {
  // Not under t.testdir(): tap removes that before this test's own teardown could unmount.
  const root = mkdtempSync(join(tmpdir(), 'conveyor-tmpfs-store-'));
  // Half the layer: the store's own files fit, the layer cannot.
  const kib = Math.max(64, Math.floor(manifest.layers[0].size / 2048));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k`, 'tmpfs', root], { stdio: 'ignore' });
  } catch {
    rmSync(root, { recursive: true, force: true });
    t.skip('mount -t tmpfs failed');
    return;
  }
  t.teardown(() => {
    execFileSync('umount', [root]);
    rmSync(root, { recursive: true, force: true });
  });
  const seen = withRule(t, () => ({ kind: 'pass' }));
  const r = await fetch(root);
  t.equal(r.code, 1, r.stderr);
  const error = errorOf(r.logs);
  t.equal(error?.code, 'ERR_STORE_IO');
  t.match(error, { path: root, needed: manifest.layers[0].size });
  t.match(error?.message, new RegExp(`${manifest.layers[0].size} bytes needed, \\d+ free under ${root}`));
  t.match(error?.hint, /--root/);
  t.equal(seen().filter(isLayerGet).length, 0, 'the layer was never requested');
});
