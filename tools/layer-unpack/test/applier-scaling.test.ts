/**
 * The applier's per-directory bookkeeping (pathtree.ts), checked for
 * correctness on layers big enough that a wrong index would show: many
 * directories replaced by files, many opaque markers, a replaced directory
 * whose old children must be forgotten. Speed is measured by
 * bench/applier-scaling.sh (`make bench`), never asserted here.
 */
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Applier } from '../dist/apply/applier.js';
import { applyLayer } from '../dist/read-layer.js';
import { END, block, fileEntry } from './helpers/tars.js';

const N = 1000;

async function flatten(t: Tap.Test, layers: Buffer[]): Promise<string> {
  const dir = t.testdir({});
  const root = join(dir, 'root');
  mkdirSync(root);
  const applier = new Applier({ root, mode: 'flat', rootless: false, maxBytes: 1 << 30, maxEntries: 1_000_000, warn: () => undefined });
  try {
    for (const [i, tar] of layers.entries()) {
      const file = join(dir, `layer${i}.tar`);
      writeFileSync(file, tar);
      applier.beginLayer(i === 0);
      await applyLayer({ path: file, label: `layer${i}` }, applier);
    }
    await applier.finish();
  } finally {
    await applier.close();
  }
  return root;
}

const dirs = (n: number, extra: (i: number) => Buffer[] = () => []) =>
  Array.from({ length: n }, (_, i) => [block({ name: `d${i}/`, type: '5', mode: 0o700 }), fileEntry(`d${i}/f`, `f${i}`), ...extra(i)]).flat();

t.test('directories replaced by files in the same layer and in a later one', async (t) => {
  const root = await flatten(t, [
    Buffer.concat([...dirs(N), ...Array.from({ length: N / 2 }, (_, i) => fileEntry(`d${i}`, `file${i}`)), END]),
    Buffer.concat([...Array.from({ length: N / 2 }, (_, i) => fileEntry(`d${N / 2 + i}`, `later${i}`)), END]),
  ]);
  t.equal(readdirSync(root).length, N);
  for (const i of [0, N / 2 - 1, N / 2, N - 1]) t.ok(lstatSync(join(root, `d${i}`)).isFile(), `d${i} is a file`);
  t.equal(readFileSync(join(root, 'd0'), 'utf8'), 'file0');
  t.equal(readFileSync(join(root, `d${N - 1}`), 'utf8'), `later${N / 2 - 1}`);
  // finish() applied no directory mode to what is now a file (the replaced directory's metadata was forgotten).
  t.equal(statSync(join(root, 'd0')).mode & 0o777, 0o644);
});

t.test('opaque markers clear lower layers and keep this layer, directory by directory', async (t) => {
  const root = await flatten(t, [
    Buffer.concat([...dirs(N, (i) => [fileEntry(`d${i}/lower`, 'l')]), END]),
    Buffer.concat([
      ...Array.from({ length: N }, (_, i) => [
        fileEntry(`d${i}/upper`, 'u'),
        block({ name: `d${i}/.wh..wh..opq`, size: 0 }),
        ...(i % 2 ? [fileEntry(`d${i}/sub/deep`, 'd')] : []),
      ]).flat(),
      END,
    ]),
  ]);
  for (const i of [0, 1, N - 2, N - 1]) {
    t.strictSame(readdirSync(join(root, `d${i}`)).sort(), i % 2 ? ['sub', 'upper'] : ['upper'], `d${i}: lower entries cleared, this layer's kept`);
  }
});

t.test('a directory replaced, then written again, forgets its old children', async (t) => {
  const root = await flatten(t, [
    Buffer.concat([
      block({ name: 'd/', type: '5' }),
      fileEntry('d/old', 'o'),
      fileEntry('d', 'now a file'),
      block({ name: 'd/', type: '5', mode: 0o750 }),
      fileEntry('d/new', 'n'),
      END,
    ]),
  ]);
  t.strictSame(readdirSync(join(root, 'd')), ['new']);
  t.equal(statSync(join(root, 'd')).mode & 0o777, 0o750);
});
