/**
 * Flat mode against umoci: the tree layer-unpack --flatten builds must match
 * what `umoci raw unpack` builds from the same image, entry for entry.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { busyboxLayout, hasSharedImages, importToStore, REPO_ROOT, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { diffTrees } from './helpers/tree.js';

const BIN = join(REPO_ROOT, 'tools', 'layer-unpack', 'bin', 'layer-unpack.js');
const IMG_LS = join(REPO_ROOT, 'tools', 'img-ls', 'bin', 'img-ls.js');

function umociUnpack(layoutAndTag: string, dir: string): void {
  execFileSync('umoci', ['raw', 'unpack', '--image', layoutAndTag, dir], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function flattenFromStore(root: string, ref: string, dir: string): Record<string, unknown> {
  const records = execFileSync('node', [IMG_LS, '--root', root, ref], { encoding: 'utf8' });
  const out = execFileSync('node', [BIN, '--root', root, '--flatten', dir], { input: records, encoding: 'utf8' });
  const lines = out.trim().split('\n');
  return JSON.parse(lines[0]);
}

const cases = [
  { name: 'busybox fixture v2 (2 layers)', layout: () => `${busyboxLayout()}:v2`, skip: false },
  { name: 'shared multi:latest (5 layers: whiteouts, opaque dirs, hardlinks, xattrs, caps)', layout: () => `${join(SHARED_IMAGES, 'multi')}:latest`, skip: !hasSharedImages },
];

for (const c of cases) {
  t.test(c.name, { skip: c.skip ? 'shared images absent' : false }, async (t) => {
    const dir = t.testdir({});
    const layout = c.layout();
    const root = join(dir, 'store');
    importToStore(layout, root, 'localhost/test/image:latest');
    umociUnpack(layout, join(dir, 'umoci'));
    const record = flattenFromStore(root, 'localhost/test/image:latest', join(dir, 'ours'));
    t.equal(record.type, 'rootfs');
    t.equal(record.dir, join(dir, 'ours'));
    t.equal(record.layerDirs, undefined);
    t.strictSame(diffTrees(join(dir, 'umoci'), join(dir, 'ours')), [], 'identical to umoci raw unpack');
  });
}

t.test('raw layer files give the same tree as the image record', async (t) => {
  const dir = t.testdir({});
  const layout = busyboxLayout();
  const root = join(dir, 'store');
  importToStore(`${layout}:v2`, root, 'localhost/test/image:v2');
  flattenFromStore(root, 'localhost/test/image:v2', join(dir, 'viarecord'));
  const image = JSON.parse(execFileSync('node', [IMG_LS, '--root', root], { encoding: 'utf8' }).trim());
  const files = image.layers.map((l: { digest: string }) => join(root, 'blobs', 'sha256', l.digest.slice(7)));
  const out = JSON.parse(execFileSync('node', [BIN, '--flatten', join(dir, 'viafiles'), ...files], { encoding: 'utf8' }));
  t.equal(out.type, 'rootfs');
  t.equal(out.dir, join(dir, 'viafiles'));
  t.strictSame(out.layers.map((l: { diffID: string }) => l.diffID), image.layers.map((l: { diffID: string }) => l.diffID), 'diff IDs computed while streaming');
  t.strictSame(diffTrees(join(dir, 'viarecord'), join(dir, 'viafiles')), []);
});

t.test('--flatten refuses a non-empty target and leaves it alone', async (t) => {
  const dir = t.testdir({ full: { keep: 'me' } });
  const layout = busyboxLayout();
  const index = JSON.parse(execFileSync('cat', [join(layout, 'index.json')], { encoding: 'utf8' }));
  t.ok(index.manifests.length > 0);
  mkdirSync(join(dir, 'empty'));
  let code = 0;
  let stderr = '';
  try {
    execFileSync('node', [BIN, '--log-format=json', '--flatten', join(dir, 'full'), '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    code = (error as { status: number }).status;
    stderr = String((error as { stderr: Buffer }).stderr);
  }
  t.equal(code, 2);
  t.match(stderr, /ERR_USAGE/);
  t.ok(existsSync(join(dir, 'full', 'keep')));
});
