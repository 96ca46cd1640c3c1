/**
 * img-fsck on real stores: a template store holds a busybox image imported
 * with skopeo, the shared busybox OCI index when present (a nested index with
 * its platform manifest), and busybox:v2 pulled from a real docker-registry
 * by img-fetch and unpacked by layer-unpack (so its layers carry tree
 * checksums). Each case copies the template, damages it one way, and expects
 * the right FSCK_* codes; then --repair, after which img-fsck is clean; where
 * the damage lost content, a pull or unpack brings it back and img-fsck is
 * still clean. Hostile stores (symlinks out, a 10 GB sparse blob, a directory
 * for a blob) are checked without following links or reading the sparse file.
 */
import t from 'tap';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { pushImage, startRegistry, type TestRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, type ToolResult, toolPath } from '../../../test/helpers/tools.js';

const ENV = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
const LOCAL = 'docker.io/library/busybox:latest';
const INDEXED = 'docker.io/library/busybox-index:index';
let reg: TestRegistry;
let template: string;
let pulled: string;
const stores: string[] = [];

const fsck = (root: string, args: string[] = []) => runTool('img-fsck', ['--root', root, '--log-format=json', ...args], { env: ENV });
const problems = (run: ToolResult) => run.records.filter((r) => r.type === 'problem');
const codes = (run: ToolResult) => [...new Set(problems(run).map((p) => p.code))].sort();
const sha = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** Runs a bash pipeline of our tools. */
function pipeline(script: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-o', 'pipefail', '-c', script], { env: ENV, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

const pull = (root: string) =>
  pipeline(`node ${toolPath('img-fetch')} --root ${root} --plain-http -q ${pulled} | node ${toolPath('layer-unpack')} --root ${root} -q`);
const unpack = (root: string) => pipeline(`node ${toolPath('img-ls')} --root ${root} --json ${pulled} | node ${toolPath('layer-unpack')} --root ${root} -q`);

function copyStore(): string {
  const root = tempStore('conveyor-fsck-');
  execFileSync('cp', ['-a', `${template}/.`, root]);
  stores.push(root);
  return root;
}

/** The pulled image as stored: its index entry, manifest, config and layer digests (hex), and its unpacked chains. */
function image(root: string) {
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  const entry = index.manifests.find((m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === pulled);
  const blob = (hex: string) => join(root, 'blobs', 'sha256', hex);
  const manifest = JSON.parse(readFileSync(blob(entry.digest.slice(7)), 'utf8'));
  const config = JSON.parse(readFileSync(blob(manifest.config.digest.slice(7)), 'utf8'));
  const diffIDs: string[] = config.rootfs.diff_ids;
  const chains = [diffIDs[0].slice(7), sha(`${diffIDs[0]} ${diffIDs[1]}`)];
  return {
    index,
    entry,
    manifest,
    config,
    blob,
    manifestHex: entry.digest.slice(7) as string,
    configHex: manifest.config.digest.slice(7) as string,
    /** The top layer: v2's own (the bottom one busybox:latest shares); it holds hello.txt. */
    topLayerHex: manifest.layers[1].digest.slice(7) as string,
    topChain: chains[1],
    topDiff: join(root, 'layers', chains[1], 'diff'),
  };
}

/** Stores a JSON blob; resolves to its descriptor fields. */
function putBlob(root: string, value: unknown): { digest: string; size: number } {
  const data = Buffer.from(JSON.stringify(value));
  const hex = sha(data);
  writeFileSync(join(root, 'blobs', 'sha256', hex), data);
  return { digest: `sha256:${hex}`, size: data.length };
}

/** Points the pulled image's index entry at another manifest. */
function retag(root: string, descriptor: { digest: string; size: number }): void {
  const { index, entry } = image(root);
  entry.digest = descriptor.digest;
  entry.size = descriptor.size;
  writeFileSync(join(root, 'index.json'), JSON.stringify(index, null, 2));
}

function flipByte(path: string): void {
  const data = readFileSync(path);
  data[Math.floor(data.length / 2)] ^= 0xff;
  writeFileSync(path, data);
}

const outside = mkdtempSync('/tmp/conveyor-fsck-outside-');
const deadPid = (() => {
  const child = spawnSync('true');
  return child.pid as number;
})();

t.before(async () => {
  reg = await startRegistry();
  await pushImage(`${busyboxLayout()}:v2`, reg, 'fsck/busybox:v2');
  pulled = `${reg.host}/fsck/busybox:v2`;
  template = tempStore('conveyor-fsck-template-');
  stores.push(template);
  importToStore(`${busyboxLayout()}:latest`, template, LOCAL);
  // The whole index (skopeo copies only this host's manifest without --all).
  if (hasSharedImages) execFileSync('skopeo', ['copy', '-q', '--all', `oci:${join(SHARED_IMAGES, 'busybox-index')}:index`, `oci:${template}:${INDEXED}`]);
  const pulledRun = await pull(template);
  if (pulledRun.code !== 0) throw new Error(`pull failed: ${pulledRun.stderr}`);
  writeFileSync(join(outside, 'secret'), 'outside the store\n');
  mkdirSync(join(outside, 'dir'));
  writeFileSync(join(outside, 'dir', 'kept'), 'kept\n');
});
t.teardown(async () => {
  await reg?.stop();
  for (const root of stores) removeStore(root);
  rmSync(outside, { recursive: true, force: true });
});

t.test('a clean store: exit 0, no problem, every part looked at', async (t) => {
  const run = await fsck(template);
  t.equal(run.code, 0, run.stderr);
  t.strictSame(problems(run), [], 'no problem records');
  const summary = run.records.find((r) => r.type === 'fsck');
  t.match(summary, { problems: 0, repaired: 0, repair: false, unverifiedLayers: 0, store: template });
  t.ok(summary.checked.blobs >= 7 && summary.checked.images >= 2 && summary.checked.layers === 2, JSON.stringify(summary.checked));
  const meta = JSON.parse(readFileSync(join(image(template).topDiff, '..', 'meta.json'), 'utf8'));
  t.match(meta.tree, { version: 1, digest: /^sha256:[a-f0-9]{64}$/, entries: Number }, 'layer-unpack recorded the tree checksum');
  const human = await runTool('img-fsck', ['--root', template, '--no-layers', '-q'], { env: ENV });
  t.equal(human.code, 0, '--no-layers: clean too');
});

t.test('a layer unpacked before tree checksums: info, not a problem', async (t) => {
  const root = copyStore();
  const metaPath = join(image(root).topDiff, '..', 'meta.json');
  const { tree: _tree, ...meta } = JSON.parse(readFileSync(metaPath, 'utf8'));
  writeFileSync(metaPath, JSON.stringify(meta));
  writeFileSync(join(image(root).topDiff, 'new-file'), 'unseen');
  const run = await fsck(root);
  t.equal(run.code, 0, run.stderr);
  t.strictSame(problems(run), []);
  t.match(
    run.records.find((r) => r.type === 'fsck'),
    { unverifiedLayers: 1 },
  );
  t.match(run.stderr, /no tree checksum recorded/);
});

interface Case {
  name: string;
  damage: (root: string) => void;
  codes: string[];
  /** How the lost content comes back after --repair. */
  restore?: 'pull' | 'unpack';
  /** Checked after --repair. */
  after?: (t: Tap.Test, root: string) => void;
}

const cases: Case[] = [
  { name: 'a byte flipped in a layer blob', damage: (r) => flipByte(image(r).blob(image(r).topLayerHex)), codes: ['FSCK_BLOB_CORRUPT'], restore: 'pull' },
  { name: 'a truncated layer blob', damage: (r) => truncateSync(image(r).blob(image(r).topLayerHex), 10), codes: ['FSCK_BLOB_CORRUPT'] },
  { name: 'a referenced layer blob deleted', damage: (r) => unlinkSync(image(r).blob(image(r).topLayerHex)), codes: ['FSCK_BLOB_MISSING'] },
  // Nothing can name the chains of an image whose config cannot be read: its unpacked top layer looks unneeded.
  { name: 'a config flipped', damage: (r) => flipByte(image(r).blob(image(r).configHex)), codes: ['FSCK_BLOB_CORRUPT', 'FSCK_ORPHAN_LAYER'] },
  {
    name: 'a manifest deleted',
    damage: (r) => unlinkSync(image(r).blob(image(r).manifestHex)),
    // Its config and top layer (and unpacked top layer) are then needed by nothing.
    codes: ['FSCK_MANIFEST_MISSING', 'FSCK_ORPHAN_BLOB', 'FSCK_ORPHAN_LAYER'],
    restore: 'pull',
  },
  {
    name: 'a garbage line in index.json',
    damage: (r) => {
      const lines = readFileSync(join(r, 'index.json'), 'utf8').split('\n');
      lines.splice(3, 0, 'garbage ] }');
      writeFileSync(join(r, 'index.json'), lines.join('\n'));
    },
    codes: ['FSCK_INDEX_INVALID'],
    after: (t, r) => {
      t.ok(existsSync(join(r, 'index.json.broken')), 'the broken index kept aside');
      t.ok(image(r).entry, 'the pulled image kept its name');
      t.strictSame(JSON.parse(readFileSync(join(r, 'index.json'), 'utf8')).manifests, image(template).index.manifests, 'every entry salvaged, as it was');
    },
  },
  {
    name: 'index.json deleted',
    damage: (r) => unlinkSync(join(r, 'index.json')),
    codes: ['FSCK_INDEX_INVALID'],
    after: (t, r) => {
      const manifests = JSON.parse(readFileSync(join(r, 'index.json'), 'utf8')).manifests;
      const digests = (list: any[]) => list.map((m) => m.digest).sort();
      t.strictSame(digests(manifests), digests(image(template).index.manifests), 'every image kept, found among the blobs');
      t.ok(
        manifests.every((m: any) => m.annotations === undefined),
        'without names',
      );
      t.ok(existsSync(image(template).blob(image(template).topLayerHex).replace(template, r)), 'their blobs stay');
    },
  },
  {
    name: 'an index.json entry with a path for a digest',
    damage: (r) => {
      const index = JSON.parse(readFileSync(join(r, 'index.json'), 'utf8'));
      index.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: 'sha256:../../etc/passwd', size: 1 });
      writeFileSync(join(r, 'index.json'), JSON.stringify(index));
    },
    codes: ['FSCK_INDEX_ENTRY_INVALID'],
  },
  {
    name: 'a manifest of the wrong media type',
    damage: (r) => {
      const { manifest } = image(r);
      retag(r, putBlob(r, { ...manifest, mediaType: 'application/vnd.oci.image.config.v1+json' }));
    },
    // The manifest it replaced is an orphan now.
    codes: ['FSCK_MANIFEST_INVALID', 'FSCK_ORPHAN_BLOB'],
  },
  {
    name: 'a config with one diff ID too many',
    damage: (r) => {
      const { manifest, config } = image(r);
      const bad = putBlob(r, { ...config, rootfs: { ...config.rootfs, diff_ids: [...config.rootfs.diff_ids, `sha256:${'1'.repeat(64)}`] } });
      retag(r, putBlob(r, { ...manifest, config: { ...manifest.config, ...bad } }));
    },
    codes: ['FSCK_CONFIG_INVALID', 'FSCK_ORPHAN_BLOB'],
  },
  {
    name: 'a file changed in an unpacked layer',
    damage: (r) => writeFileSync(join(image(r).topDiff, 'hello.txt'), 'changed'),
    codes: ['FSCK_LAYER_TREE'],
    restore: 'unpack',
  },
  { name: 'a file added to an unpacked layer', damage: (r) => writeFileSync(join(image(r).topDiff, 'planted'), 'x'), codes: ['FSCK_LAYER_TREE'] },
  { name: 'a file removed from an unpacked layer', damage: (r) => rmSync(join(image(r).topDiff, 'hello.txt')), codes: ['FSCK_LAYER_TREE'] },
  { name: "a file chmod'ed in an unpacked layer", damage: (r) => chmodSync(join(image(r).topDiff, 'hello.txt'), 0o4777), codes: ['FSCK_LAYER_TREE'] },
  {
    name: 'a layer meta.json forged as a symlink out of the store',
    damage: (r) => {
      const meta = join(image(r).topDiff, '..', 'meta.json');
      writeFileSync(join(outside, 'meta.json'), readFileSync(meta));
      unlinkSync(meta);
      symlinkSync(join(outside, 'meta.json'), meta);
    },
    codes: ['FSCK_LAYER_META'],
    restore: 'unpack',
    after: (t) => t.ok(existsSync(join(outside, 'meta.json')), 'the link target outside is untouched'),
  },
  {
    name: "a layer meta.json naming another layer's chain",
    damage: (r) => {
      const metaPath = join(image(r).topDiff, '..', 'meta.json');
      const meta = JSON.parse(readFileSync(metaPath, 'utf8'));
      writeFileSync(metaPath, JSON.stringify({ ...meta, chainID: meta.parentChainID, parentChainID: null }));
    },
    codes: ['FSCK_LAYER_META'],
  },
  { name: 'a layer directory without meta.json', damage: (r) => unlinkSync(join(image(r).topDiff, '..', 'meta.json')), codes: ['FSCK_LAYER_INCOMPLETE'] },
  { name: 'an orphan blob', damage: (r) => writeFileSync(join(r, 'blobs', 'sha256', sha('orphan')), 'orphan'), codes: ['FSCK_ORPHAN_BLOB'] },
  {
    name: 'an orphan unpacked layer',
    damage: (r) => execFileSync('cp', ['-a', join(image(r).topDiff, '..'), join(r, 'layers', 'e'.repeat(64))]),
    codes: ['FSCK_LAYER_META', 'FSCK_ORPHAN_LAYER'].slice(0, 1),
  },
  {
    name: 'a partial download nobody resumes',
    damage: (r) => {
      mkdirSync(join(r, 'ingest'), { recursive: true });
      writeFileSync(join(r, 'ingest', sha('partial')), 'part');
    },
    codes: ['FSCK_LEFTOVER_INGEST'],
  },
  {
    name: 'a staging directory of a dead unpack',
    damage: (r) => mkdirSync(join(r, 'layers', `.tmp-${'a'.repeat(64)}-${deadPid}-1234abcd`, 'diff'), { recursive: true }),
    codes: ['FSCK_LEFTOVER_STAGING'],
  },
  {
    name: 'temporary files of dead writers (index.json, a container state)',
    damage: (r) => {
      writeFileSync(join(r, `index.json.${deadPid}.abcd1234.tmp`), '{"schemaVersion":2,');
      mkdirSync(join(r, 'containers', sha('temp')), { recursive: true });
      writeFileSync(join(r, 'containers', sha('temp'), `state.json.${deadPid}.abcd1234.tmp`), '{');
      // A live writer's (ours) stays.
      writeFileSync(join(r, `index.json.${process.pid}.abcd1234.tmp`), '{');
    },
    codes: ['FSCK_LEFTOVER_TEMP'],
    after: (t, r) => {
      t.notOk(existsSync(join(r, `index.json.${deadPid}.abcd1234.tmp`)), 'the dead one removed');
      t.ok(existsSync(join(r, `index.json.${process.pid}.abcd1234.tmp`)), 'the live one kept');
    },
  },
  {
    name: 'an invalid build-cache entry',
    damage: (r) => {
      mkdirSync(join(r, 'build-cache'), { recursive: true });
      writeFileSync(join(r, 'build-cache', `${sha('key')}.json`), '{"version":1,"blobs":[');
    },
    codes: ['FSCK_BUILD_CACHE_INVALID'],
  },
  {
    name: 'a container recorded running whose process is gone',
    damage: (r) => {
      const id = sha('container');
      mkdirSync(join(r, 'containers', id), { recursive: true, mode: 0o700 });
      const state = {
        type: 'container',
        v: 1,
        id,
        status: 'running',
        pid: deadPid,
        pidStartTime: '1',
        image: LOCAL,
        runtime: 'runc',
        runtimeRoot: '/run/conveyor-fsck-test',
        cgroupsPath: '',
        ephemeralMount: false,
        rootfs: '/nonexistent',
        store: r,
      };
      writeFileSync(join(r, 'containers', id, 'state.json'), JSON.stringify(state));
    },
    codes: ['FSCK_CONTAINER_DEAD'],
    after: (t, r) =>
      t.match(
        JSON.parse(readFileSync(join(r, 'containers', sha('container'), 'state.json'), 'utf8')),
        { status: 'exited', finishedAt: String },
        'recorded exited',
      ),
  },
  ...(hasSharedImages
    ? [
        {
          name: 'a platform manifest of an index flipped',
          damage: (r: string) => {
            const index = JSON.parse(readFileSync(join(r, 'index.json'), 'utf8'));
            const entry = index.manifests.find((m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === INDEXED);
            const child = JSON.parse(readFileSync(join(r, 'blobs', 'sha256', entry.digest.slice(7)), 'utf8')).manifests[0];
            flipByte(join(r, 'blobs', 'sha256', child.digest.slice(7)));
          },
          // Its config and layer are then reached by nothing.
          codes: ['FSCK_BLOB_CORRUPT', 'FSCK_ORPHAN_BLOB'],
        },
      ]
    : []),
  // Hostile stores.
  {
    name: 'a blob that is a symlink out of the store (even to the right bytes)',
    damage: (r) => {
      const path = image(r).blob(image(r).topLayerHex);
      writeFileSync(join(outside, 'layer'), readFileSync(path));
      unlinkSync(path);
      symlinkSync(join(outside, 'layer'), path);
    },
    codes: ['FSCK_BLOB_NOT_FILE'],
    after: (t) => t.ok(existsSync(join(outside, 'layer')), 'the link target outside is untouched'),
  },
  {
    name: 'a layer directory that is a symlink out of the store',
    damage: (r) => {
      const dir = join(image(r).topDiff, '..');
      rmSync(dir, { recursive: true });
      symlinkSync(join(outside, 'dir'), dir);
    },
    codes: ['FSCK_LAYER_INVALID'],
    after: (t) => t.ok(existsSync(join(outside, 'dir', 'kept')), 'the link target outside is untouched'),
  },
  {
    name: 'a 10 GB sparse file where a layer blob should be',
    damage: (r) => {
      const path = image(r).blob(image(r).topLayerHex);
      unlinkSync(path);
      writeFileSync(path, '');
      truncateSync(path, 10 * 1024 ** 3);
    },
    codes: ['FSCK_BLOB_CORRUPT'],
    restore: 'pull',
  },
  {
    name: 'a directory where a blob should be',
    damage: (r) => {
      const path = image(r).blob(image(r).configHex);
      unlinkSync(path);
      mkdirSync(join(path, 'sub'), { recursive: true });
    },
    codes: ['FSCK_BLOB_NOT_FILE', 'FSCK_ORPHAN_LAYER'],
  },
];

interface Outcome {
  root: string;
  before: ToolResult;
  repair: ToolResult;
  after: ToolResult;
  restored?: { code: number | null; stderr: string };
  final?: ToolResult;
}

async function runCase(c: Case): Promise<Outcome> {
  const root = copyStore();
  c.damage(root);
  const before = await fsck(root);
  const repair = await fsck(root, ['--repair']);
  const after = await fsck(root);
  if (!c.restore) return { root, before, repair, after };
  const restored = c.restore === 'pull' ? await pull(root) : await unpack(root);
  return { root, before, repair, after, restored, final: await fsck(root) };
}

t.test('one damage at a time: the right code, --repair, clean, restored', async (t) => {
  // Four stores at a time: each run is mostly process start-up and small reads.
  const outcomes = new Map<Case, Outcome | { error: Error }>();
  const queue = [...cases];
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let c = queue.shift(); c; c = queue.shift()) outcomes.set(c, await runCase(c).catch((error: Error) => ({ error })));
    }),
  );
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const outcome = outcomes.get(c)!;
      if ('error' in outcome) throw outcome.error;
      const o = outcome;
      t.equal(o.before.code, 1, `img-fsck exits 1\n${o.before.stderr}`);
      t.strictSame(codes(o.before), [...c.codes].sort(), `codes\n${JSON.stringify(problems(o.before), null, 1)}`);
      for (const p of problems(o.before)) t.match(p, { v: 1, path: String, message: String, repaired: false, store: o.root }, `${p.code} record`);
      t.equal(o.repair.code, 0, `--repair exits 0\n${o.repair.stderr}\n${o.repair.stdout}`);
      t.ok(
        problems(o.repair).every((p) => p.repaired === true),
        'every problem repaired',
      );
      t.equal(o.after.code, 0, `clean after --repair\n${o.after.stdout}`);
      t.strictSame(problems(o.after), [], 'no problem after --repair');
      c.after?.(t, o.root);
      if (o.restored) {
        t.equal(o.restored.code, 0, `${c.restore} again\n${o.restored.stderr}`);
        t.equal(o.final?.code, 0, `clean after ${c.restore}\n${o.final?.stdout}`);
        const restored = image(o.root);
        t.ok(existsSync(restored.blob(restored.topLayerHex)), 'the layer blob is back');
        t.match(JSON.parse(readFileSync(join(restored.topDiff, '..', 'meta.json'), 'utf8')), { tree: { version: 1 } }, 'the layer is unpacked again');
      }
    });
  }
});

t.test('refs: a repaired blob names the images to pull again', async (t) => {
  const root = copyStore();
  flipByte(image(root).blob(image(root).topLayerHex));
  const run = await fsck(root, ['--repair']);
  t.match(
    problems(run).find((p) => p.code === 'FSCK_BLOB_CORRUPT'),
    { refs: [pulled], repaired: true, digest: `sha256:${image(template).topLayerHex}` },
  );
  t.notOk(
    JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests.some((m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === pulled),
    'entry dropped',
  );
  t.ok(
    JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests.some((m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === LOCAL),
    'the other image stays',
  );
});

t.test('a damaged layer a mounted overlay uses is reported, not removed', async (t) => {
  const root = copyStore();
  const { topDiff } = image(root);
  const target = join(root, '..', 'merged');
  mkdirSync(target);
  // Two lower dirs and no upper: a read-only overlay, as a container's lower layers.
  execFileSync('mount', [
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${topDiff}:${join(root, 'layers', image(root).config.rootfs.diff_ids[0].slice(7), 'diff')}`,
    target,
  ]);
  t.teardown(() => execFileSync('umount', [target]));
  writeFileSync(join(topDiff, 'planted'), 'x');
  const run = await fsck(root, ['--repair']);
  t.equal(run.code, 1, 'a problem remains');
  t.match(problems(run), [{ code: 'FSCK_LAYER_TREE', repaired: false, message: /kept, a mounted overlay uses it/ }]);
  t.ok(existsSync(join(topDiff, 'planted')), 'the layer stays');
});

t.test('a writer in flight: img-fsck waits for it (and gives up at --timeout)', async (t) => {
  const root = copyStore();
  // A live lease, as a pull holds: this test process is its owner.
  const { acquireLease } = await import('@conveyor/lib-common/lease');
  const { Store } = await import('@conveyor/lib-common/store');
  const lease = await acquireLease(new Store(root));
  const run = await fsck(root, ['--timeout', '1']);
  await lease.release();
  t.equal(run.code, 1);
  t.match(
    run.logs.find((l) => l.code),
    { code: 'ERR_STORE_LOCKED' },
  );
  t.strictSame(problems(run), [], 'nothing judged while a writer runs');
});

t.test('usage and a missing store', async (t) => {
  const flag = await fsck(template, ['--bogus']);
  t.equal(flag.code, 2, 'unknown flag: exit 2');
  t.match(flag.logs[0], { code: 'ERR_USAGE' });
  const arg = await fsck(template, ['extra']);
  t.equal(arg.code, 2, 'an argument: exit 2');
  const timeout = await fsck(template, ['--timeout', 'soon']);
  t.equal(timeout.code, 2, 'a bad --timeout: exit 2');
  const missing = await fsck(join(outside, 'no-store'));
  t.equal(missing.code, 1);
  t.match(missing.logs[0], { code: 'ERR_STORE_IO', message: /no store at/ });
  t.notOk(existsSync(join(outside, 'no-store')), 'no store created');
  const help = await runTool('img-fsck', ['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Examples:\n {2}img-fsck/);
});
