/**
 * img-history on real images (checked against skopeo's reading of their
 * configs), its table, and bad input; historyRecords' joining of entries and
 * layers, table-driven, on hostile configs.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { runTool } from '../../../test/helpers/tools.js';
import { historyRecords } from '@conveyor/lib-common/image-history';
import type { ImageConfigBlob, ImageManifest } from '@conveyor/lib-common/image';
import { historyRows, truncate } from '../src/table.js';

if (!hasSharedImages) t.fail(`the shared images are missing: ${SHARED_IMAGES}`);

const layer = (n: number) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${String(n).repeat(64)}`, size: n * 100 });
const manifest = (layers: number): ImageManifest => ({
  schemaVersion: 2,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'c'.repeat(64)}`, size: 1 },
  layers: Array.from({ length: layers }, (_, i) => layer(i + 1)),
});
const config = (history: unknown): ImageConfigBlob => ({ rootfs: { type: 'layers', diff_ids: [] }, history: history as unknown[] });

// [what, layers, history, expected [createdBy, size, emptyLayer, layer index or -1] newest first]
const cases: [string, number, unknown, [string, number, boolean, number][]][] = [
  [
    'one entry per layer',
    2,
    [{ created_by: 'a' }, { created_by: 'b' }],
    [
      ['b', 400, false, 1],
      ['a', 200, false, 0],
    ],
  ],
  [
    'empty layers take no layer',
    2,
    [{ created_by: 'a' }, { created_by: 'ENV x', empty_layer: true }, { created_by: 'b' }],
    [
      ['b', 400, false, 1],
      ['ENV x', 0, true, -1],
      ['a', 200, false, 0],
    ],
  ],
  [
    'no history: one synthesised entry per layer',
    2,
    undefined,
    [
      ['', 400, false, 1],
      ['', 200, false, 0],
    ],
  ],
  [
    'history that does not account for the layers: synthesised',
    2,
    [{ created_by: 'a' }],
    [
      ['', 400, false, 1],
      ['', 200, false, 0],
    ],
  ],
  [
    'junk entries read as absent fields',
    2,
    [null, { created_by: 42, comment: ['x'], empty_layer: 'yes' }],
    [
      ['', 400, false, 1],
      ['', 200, false, 0],
    ],
  ],
  ['a history that is not a list', 1, 'nope', [['', 200, false, 0]]],
];
for (const [what, layers, history, expected] of cases) {
  const m = manifest(layers);
  const records = historyRecords(
    'x',
    m,
    config(history),
    m.layers.map((l) => l.size * 2),
  );
  t.strictSame(
    records.map((r) => [r.createdBy, r.size, r.emptyLayer, r.layer === undefined ? -1 : m.layers.findIndex((l) => l.digest === r.layer)]),
    expected,
    what,
  );
}

t.equal(truncate('x'.repeat(50), 45), `${'x'.repeat(44)}…`);
t.equal(truncate('short', 45), 'short');
t.test('the table shows the id on the newest row, <missing> below, escapes made printable', async (t) => {
  const m = manifest(2);
  const records = historyRecords('x', m, config([{ created_by: 'a\x1b[2J' }, { created_by: 'b', created: '2026-11-28T12:00:00Z' }]), [10, 20]);
  const rows = historyRows(records, 'abcdef123456', { now: Date.parse('2026-11-29T12:00:00Z') });
  t.strictSame(rows, [
    ['abcdef123456', '1 day ago', 'b', '20B', ''],
    ['<missing>', 'N/A', 'a?[2J', '10B', ''],
  ]);
});

t.test('real images: entries and sizes as skopeo and the layers say', async (t) => {
  const root = t.testdir();
  importToStore(`${SHARED_IMAGES}/multi:latest`, root, 'docker.io/library/multi:latest');
  const result = await runTool('img-history', ['--root', root, 'multi']);
  t.equal(result.code, 0, result.stderr);
  const skopeo = JSON.parse(execFileSync('skopeo', ['inspect', '--config', `oci:${SHARED_IMAGES}/multi:latest`], { encoding: 'utf8' }));
  t.strictSame(
    result.records.map((r) => [r.type, r.createdBy, r.created, r.emptyLayer]),
    skopeo.history.map((h: Record<string, unknown>) => ['history', h.created_by, h.created, h.empty_layer === true]).reverse(),
  );
  const image = (await runTool('img-ls', ['--root', root, 'multi'])).records[0];
  t.strictSame(
    result.records.map((r) => r.layer),
    image.layers.map((l: { digest: string }) => l.digest).reverse(),
    'each entry joined with its layer',
  );
  // The bottom layer's unpacked size: the tar skopeo's blob decompresses to.
  const bottom = image.layers[0].digest.slice(7);
  const tarBytes = Number(execFileSync('sh', ['-c', `gzip -dc ${root}/blobs/sha256/${bottom} | wc -c`], { encoding: 'utf8' }).trim());
  t.equal(result.records.at(-1).size, tarBytes, "the size is the layer's unpacked size");

  const table = await runTool('img-history', ['--root', root, '--table', 'multi']);
  t.match(table.stdout, /^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT\n[a-f0-9]{12}\s/);
  t.equal(table.stdout.split('\n').filter((l) => l.startsWith('<missing>')).length, 4);

  const piped = await runTool('img-history', ['--root', root], { input: (await runTool('img-ls', ['--root', root])).stdout });
  t.equal(piped.records.length, 5, 'img-ls | img-history');
});

t.test('bad input and unknown images', async (t) => {
  const root = t.testdir();
  const missing = await runTool('img-history', ['--root', root, '--log-format=json', 'nothere']);
  t.equal(missing.code, 1);
  t.equal(missing.logs[0]?.code, 'ERR_IMAGE_NOT_FOUND');
  const bad = await runTool('img-history', ['--root', root, '--log-format=json'], { input: '{nope\n' });
  t.equal(bad.code, 2);
  t.match(bad.logs[0]?.message, /stdin:1/);
  t.equal((await runTool('img-history', ['--bogus'])).code, 2);
});
