/**
 * The per-image inflate budget: --max-bytes and --max-entries bound each
 * layer, --max-image-bytes and --max-image-entries all of an image's layers
 * together, in per-layer and flat mode, whether the layers come from image
 * records, layer records or the cache.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runToolSync } from '../../../test/helpers/tools.js';
import { imageRecords, storeImage } from './helpers/store.js';
import { makeTar } from './helpers/tars.js';

const KiB = 1024;

function unpack(root: string, input: string, extra: string[]) {
  return runToolSync('layer-unpack', ['--log-format=json', '--root', root, ...extra], { input });
}

/** Three layers of 400 KiB in 10 files each (11 entries with their directory). */
async function threeLayers(t: Tap.Test): Promise<{ dir: string; root: string; text: string; image: Record<string, any> }> {
  const dir = t.testdir({});
  const root = join(dir, 'store');
  const layer = (n: number) =>
    makeTar([
      { name: `l${n}/`, type: 'directory' },
      ...Array.from({ length: 10 }, (_, i) => ({ name: `l${n}/f${i}`, content: Buffer.alloc(40 * KiB, n + i) })),
    ]);
  await storeImage(root, 'localhost/three:1', [await layer(0), await layer(1), await layer(2)]);
  const { text, records } = imageRecords(root);
  return { dir, root, text, image: records[0] };
}

const layerRecords = (image: Record<string, any>) =>
  image.layers
    .map((l: Record<string, unknown>, i: number) =>
      JSON.stringify({
        type: 'layer',
        v: 1,
        ...l,
        ref: image.ref,
        index: i,
        count: image.layers.length,
        store: image.store,
        ...(i > 0 ? { parentChainID: image.layers[i - 1].chainID } : {}),
      }),
    )
    .join('\n') + '\n';

t.test('per-layer caps and image caps, per-layer and flat mode', async (t) => {
  const cases = [
    // Each layer is 400 KiB and 11 entries; the image 1200 KiB and 33 entries.
    { name: 'within both caps', flags: ['--max-bytes', '500k', '--max-image-bytes', '2m'], ok: true },
    {
      name: 'each layer within --max-bytes, the image not within --max-image-bytes',
      flags: ['--max-bytes', '500k', '--max-image-bytes', '1000k'],
      ok: false,
      image: true,
    },
    {
      name: 'each layer within --max-entries, the image not within --max-image-entries',
      flags: ['--max-entries', '20', '--max-image-entries', '30'],
      ok: false,
      image: true,
    },
    { name: 'a layer past --max-bytes', flags: ['--max-bytes', '300k'], ok: false, image: false },
  ];
  for (const mode of ['layers', 'flatten'] as const) {
    for (const c of cases) {
      t.test(`${mode}: ${c.name}`, async (t) => {
        const { dir, root, text } = await threeLayers(t);
        const flat = join(dir, 'flat');
        const run = unpack(root, text, [...c.flags, ...(mode === 'flatten' ? ['--flatten', flat] : [])]);
        if (c.ok) {
          t.equal(run.code, 0, run.stderr);
          t.equal(run.records.length, 1);
          return;
        }
        t.equal(run.code, 1, run.stderr);
        t.match(run.stderr, /"code":"ERR_LAYER_TOO_LARGE"/);
        if (c.image) t.match(run.stderr, /--max-image-bytes or --max-image-entries/, 'the hint names the image caps');
        else t.notMatch(run.stderr, /max-image/, 'a per-layer failure does not blame the image');
        t.strictSame(run.records, []);
        if (mode === 'flatten') t.notOk(existsSync(flat), 'nothing left at the target');
      });
    }
  }
});

t.test('the budget stops the layer that passes it while it unpacks, not after', async (t) => {
  const { root, text, image } = await threeLayers(t);
  const run = unpack(root, text, ['--jobs', '1', '--max-image-bytes', '1000k']);
  t.equal(run.code, 1, run.stderr);
  t.match(run.stderr, /the image's layers together may unpack at most 1024000 bytes/);
  const landed = image.layers.map((l: { chainID: string }) => existsSync(join(root, 'layers', l.chainID.slice(7), 'meta.json')));
  t.strictSame(landed, [true, true, false], 'the third layer never lands in the store');
  t.strictSame(
    readdirSync(join(root, 'layers')).filter((n) => n.startsWith('.tmp-')),
    [],
    'its staging dir is gone',
  );
});

t.test('layers found in the store count toward the image', async (t) => {
  const { root, text } = await threeLayers(t);
  t.equal(unpack(root, text, []).code, 0, 'unpacked with the default caps');
  const run = unpack(root, text, ['--max-image-bytes', '1000k']);
  t.equal(run.code, 1, run.stderr);
  t.match(run.stderr, /its 3 layers unpack to 1228800 bytes in 33 entries; the limit is 1024000 bytes/);
});

t.test('streamed layer records share their image budget', async (t) => {
  const { root, text, image } = await threeLayers(t);
  const run = unpack(root, layerRecords(image) + text, ['--jobs', '1', '--max-image-bytes', '1000k']);
  t.equal(run.code, 1, run.stderr);
  t.match(run.stderr, /"code":"ERR_LAYER_TOO_LARGE"/);
  t.notOk(existsSync(join(root, 'layers', image.layers[2].chainID.slice(7))), 'the third layer never lands');
  const ok = unpack(root, layerRecords(image) + text, ['--max-image-bytes', '2m']);
  t.equal(ok.code, 0, ok.stderr);
  t.equal(ok.records.length, 1);
});

t.test('usage errors for the image caps', async (t) => {
  const dir = t.testdir({});
  for (const flags of [
    ['--max-image-bytes', 'lots'],
    ['--max-image-entries', '0'],
  ]) {
    const run = unpack(join(dir, 's'), '', flags);
    t.equal(run.code, 2, flags.join(' '));
    t.match(run.stderr, /"code":"ERR_USAGE"/);
  }
});

t.test('ImageBudget and layerLimits: what a layer may use while others unpack', async (t) => {
  const { ImageBudget, layerLimits } = await import('../src/budget.js');
  const budget = new ImageBudget({ maxBytes: 1000, maxEntries: 100 });
  let a = { bytes: 0, entries: 0 };
  let b = { bytes: 0, entries: 0 };
  const stopA = budget.watch('a', () => a);
  budget.watch('b', () => b);
  const limitsOf = (chain: string) =>
    layerLimits(
      { maxBytes: 700, maxEntries: 60 },
      budget.caps,
      () => ({ bytes: 0, entries: 0 }),
      () => budget.others(chain),
    );
  const la = limitsOf('a');
  const lb = limitsOf('b');
  const cases = [
    // [maxBytes, image cap bound it, maxEntries, image cap bound it]
    {
      name: 'nothing unpacked: the per-layer caps bind',
      a: { bytes: 0, entries: 0 },
      b: { bytes: 0, entries: 0 },
      la: [700, false, 60, false],
      lb: [700, false, 60, false],
    },
    {
      name: 'a has used 600 bytes: b may use 400',
      a: { bytes: 600, entries: 10 },
      b: { bytes: 0, entries: 0 },
      la: [700, false, 60, false],
      lb: [400, true, 60, false],
    },
    {
      name: 'both past half: each may use what the other left',
      a: { bytes: 600, entries: 50 },
      b: { bytes: 500, entries: 45 },
      la: [500, true, 55, true],
      lb: [400, true, 50, true],
    },
  ] as const;
  const read = (l: typeof la) => [l.maxBytes, l.imageBound, l.maxEntries, l.imageBound];
  for (const c of cases) {
    a = { ...c.a };
    b = { ...c.b };
    await new Promise((r) => setTimeout(r, 30)); // past the snapshot interval
    t.strictSame(read(la), c.la, `${c.name}: a`);
    t.strictSame(read(lb), c.lb, `${c.name}: b`);
  }
  // a ends and is settled with its final usage; b keeps counting it.
  stopA();
  budget.settle('a', { bytes: 650, entries: 50 });
  t.equal(lb.maxBytes, 350, 'a settled: b may use the rest');
  t.doesNotThrow(() => budget.check('image'));
  budget.settle('b', { bytes: 400, entries: 10 });
  t.throws(() => budget.check('image'), { code: 'ERR_LAYER_TOO_LARGE', message: /its 2 layers unpack to 1050 bytes in 60 entries; the limit is 1000 bytes/ });
});
