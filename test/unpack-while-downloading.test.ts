/**
 * `img-fetch | layer-unpack` unpacks a layer while it downloads (issue 17:
 * img-fetch's `download` records, layer-unpack following the ingest file),
 * against a real registry behind proxies that slow, cut, corrupt and kill the
 * download. Each run ends with the same layer tree as an undisturbed pull, or
 * with nothing: no layer dir, no staging dir.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startThrottleProxy } from './helpers/crash.js';
import { busyboxLayout } from './helpers/fixtures.js';
import { type FaultAction, type ProxiedRequest, pushImage, rawManifest, startFaultProxy, startRegistry, type TestRegistry } from './helpers/registry.js';
import { removeStore, tempStore } from './helpers/rootfs.js';
import { jsonLines, toolPath } from './helpers/tools.js';

let reg: TestRegistry;
let layerDigest: string;
t.before(async () => {
  reg = await startRegistry();
  await pushImage(`${busyboxLayout()}:latest`, reg, 'bb:latest');
  layerDigest = JSON.parse((await rawManifest(reg, 'bb:latest')).body.toString('utf8')).layers[0].digest;
});
t.teardown(() => reg?.stop());

function store(t: { teardown(fn: () => void): void }): string {
  const root = tempStore('conveyor-overlap-');
  t.teardown(() => removeStore(root));
  return root;
}

interface Piped {
  fetch: ChildProcess;
  done: Promise<{ fetchCode: number | null; code: number | null; records: Record<string, any>[]; stderr: string }>;
}

/** img-fetch HOST/bb:latest | layer-unpack, both on --root `root`. */
function pipeline(root: string, host: string): Piped {
  const fetch = spawn('node', [toolPath('img-fetch'), '--root', root, '--log-format=json', `${host}/bb:latest`], { stdio: ['ignore', 'pipe', 'pipe'] });
  const unpack = spawn('node', [toolPath('layer-unpack'), '--root', root, '--log-format=json'], { stdio: ['pipe', 'pipe', 'pipe'] });
  fetch.stdout!.pipe(unpack.stdin!);
  let stdout = '';
  let stderr = '';
  unpack.stdout!.setEncoding('utf8').on('data', (d) => (stdout += d));
  for (const child of [fetch, unpack]) child.stderr!.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = (child: ChildProcess) => new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const done = Promise.all([exited(fetch), exited(unpack)]).then(([fetchCode, code]) => ({ fetchCode, code, records: jsonLines(stdout), stderr }));
  return { fetch, done };
}

const layerDirs = (root: string) => (existsSync(join(root, 'layers')) ? readdirSync(join(root, 'layers')) : []);
const staging = (root: string) => layerDirs(root).filter((n) => n.startsWith('.tmp-'));
/** The tree checksum layer-unpack recorded for each committed layer (lib-common tree-digest). */
const trees = (root: string) =>
  Object.fromEntries(
    layerDirs(root)
      .filter((n) => /^[0-9a-f]{64}$/.test(n))
      .map((n) => [n, JSON.parse(readFileSync(join(root, 'layers', n, 'meta.json'), 'utf8')).tree.digest]),
  );

let expected: Record<string, string>;
t.test('an undisturbed pull: the layer tree to compare with', async (t) => {
  const root = store(t);
  const run = await pipeline(root, reg.host).done;
  t.equal(run.code, 0, run.stderr);
  expected = trees(root);
  t.equal(Object.keys(expected).length, 1);
});

t.test('a slow download: the layer unpacks while it downloads, and is the same layer', async (t) => {
  const slow = await startThrottleProxy(`http://${reg.host}`, 512 * 1024);
  t.teardown(() => slow.stop());
  const root = store(t);
  const run = pipeline(root, slow.host);
  const ingest = join(root, 'ingest', layerDigest.slice(7));
  let overlapped = false;
  const watching = setInterval(() => {
    if (existsSync(ingest) && staging(root).length > 0) overlapped = true;
  }, 5);
  const result = await run.done;
  clearInterval(watching);
  t.equal(result.code, 0, result.stderr);
  t.ok(overlapped, 'a staging dir was there while the blob was still in ingest/');
  t.strictSame(trees(root), expected);
  t.equal(result.records[0]?.type, 'rootfs');
});

const isLayerGet = (req: ProxiedRequest) => req.method === 'GET' && req.url.endsWith(`/blobs/${layerDigest}`);
const faults: { name: string; rule: (req: ProxiedRequest, n: number) => FaultAction; code: number; layer: boolean }[] = [
  {
    name: 'cut at 40% and resumed with Range',
    rule: (req, n) => (isLayerGet(req) && n === 0 ? { kind: 'cut', bytes: 440_000 } : { kind: 'pass' }),
    code: 0,
    layer: true,
  },
  {
    name: 'a registry that lies about the layer (ERR_DIGEST_MISMATCH)',
    rule: (req) => (isLayerGet(req) ? { kind: 'corrupt' } : { kind: 'pass' }),
    code: 1,
    layer: false,
  },
];
for (const f of faults) {
  t.test(`${f.name}: ${f.layer ? 'the same layer' : 'nothing kept'}`, async (t) => {
    const proxy = await startFaultProxy(`http://${reg.host}`, f.rule);
    t.teardown(() => proxy.stop());
    const root = store(t);
    const result = await pipeline(root, proxy.host).done;
    t.equal(result.code, f.code, result.stderr);
    t.strictSame(trees(root), f.layer ? expected : {});
    t.strictSame(staging(root), [], 'no staging dir left');
    if (!f.layer) {
      t.match(result.stderr, /ERR_DIGEST_MISMATCH/);
      t.strictSame(
        result.records.map((r) => r.type),
        ['error'],
        "img-fetch's error record, passed on",
      );
    }
  });
}

t.test('img-fetch killed mid-download: layer-unpack keeps nothing and exits', async (t) => {
  const slow = await startThrottleProxy(`http://${reg.host}`, 256 * 1024);
  t.teardown(() => slow.stop());
  const root = store(t);
  const run = pipeline(root, slow.host);
  for (let i = 0; i < 3000 && staging(root).length === 0; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  t.ok(staging(root).length > 0, 'the layer was unpacking from the download');
  run.fetch.kill('SIGKILL');
  const result = await run.done;
  t.equal(result.code, 0, 'nothing failed in layer-unpack: its input ended');
  t.strictSame(trees(root), {});
  t.strictSame(staging(root), [], 'no staging dir left');
});
