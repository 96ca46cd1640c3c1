/**
 * img-df on a real store: images imported by skopeo, a layer unpacked, a
 * running detached container (runc) keeping its image and layer active.
 * Reclaimable is checked against img-prune -a --dry-run's own report.
 */
import t from 'tap';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { deleteAllContainers, startDetached } from '../../../test/helpers/containers.js';
import { hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { runTool } from '../../../test/helpers/tools.js';
import { reclaimableText } from '../src/table.js';

// [reclaimable, size, text]
const texts: [number, number, string][] = [
  [500_000, 1_000_000, '500.0kB (50%)'],
  [0, 1_000_000, '0B (0%)'],
  [0, 0, '0B'],
  [999, 1000, '999B (99%)'],
];
for (const [reclaimable, size, text] of texts) t.equal(reclaimableText(reclaimable, size), text, `${reclaimable} of ${size}`);

if (!hasSharedImages) t.fail(`the shared images are missing: ${SHARED_IMAGES}`);

const df = async (root: string, args: string[] = []) => {
  const result = await runTool('img-df', ['--root', root, ...args]);
  return { ...result, byKind: Object.fromEntries(result.records.map((r) => [r.kind, r])) };
};
const blobBytes = (root: string) =>
  readdirSync(join(root, 'blobs', 'sha256')).reduce((sum, name) => sum + statSync(join(root, 'blobs', 'sha256', name)).size, 0);

t.test('images, layers and containers; reclaimable as img-prune -a would free', async (t) => {
  const root = tempStore();
  t.teardown(async () => {
    await deleteAllContainers(root);
    removeStore(root);
  });
  const rootfs = busyboxRootfs(root);
  importToStore(`${SHARED_IMAGES}/debian:bookworm-slim`, root, 'docker.io/library/debian:bookworm-slim');

  const idle = await df(root);
  t.equal(idle.code, 0, idle.stderr);
  t.strictSame(
    idle.records.map((r) => r.kind),
    ['images', 'layers', 'containers'],
  );
  t.match(idle.byKind.images, { type: 'df', v: 1, total: 2, active: 0, size: blobBytes(root) });
  t.match(idle.byKind.layers, { total: 1, active: 0 });
  t.ok(idle.byKind.layers.size > 1_000_000, 'the unpacked busybox layer counts');
  const prune = await runTool('img-prune', ['--root', root, '-a', '--dry-run']);
  t.equal(prune.code, 0, prune.stderr);
  const freed = (kinds: string[]) => prune.records.filter((r) => r.type === 'freed' && kinds.includes(r.kind)).reduce((sum, r) => sum + r.size, 0);
  t.equal(idle.byKind.images.reclaimable, freed(['blob', 'temp', 'ingest']), "images' reclaimable is what img-prune -a frees of blobs");
  t.equal(idle.byKind.images.reclaimable, idle.byKind.images.size, 'nothing in use: all of it');
  t.equal(idle.byKind.layers.reclaimable, freed(['layer', 'staging']));
  t.strictSame(idle.byKind.containers, { ...idle.byKind.containers, total: 0, active: 0, size: 0, reclaimable: 0 });

  await startDetached(root, rootfs, []);
  const busy = await df(root);
  t.equal(busy.code, 0, busy.stderr);
  t.match(busy.byKind.images, { total: 2, active: 1 });
  t.ok(busy.byKind.images.reclaimable < busy.byKind.images.size, 'busybox is kept for its container');
  t.ok(busy.byKind.images.reclaimable > 20_000_000, 'debian is reclaimable');
  t.match(busy.byKind.layers, { total: 1, active: 1, reclaimable: 0 });
  t.match(busy.byKind.containers, { total: 1, active: 1, reclaimable: 0 });
  t.ok(busy.byKind.containers.size > 0);

  const table = await df(root, ['--table']);
  t.match(table.stdout, /^TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE\nImages\s+2\s+1\s+\S+\s+\S+ \(\d+%\)\n/);
});

t.test('usage errors exit 2; an empty store is all zeros', async (t) => {
  t.equal((await runTool('img-df', ['--nope'])).code, 2);
  t.equal((await runTool('img-df', ['extra'])).code, 2);
  t.equal((await runTool('img-df', ['--timeout', 'soon'])).code, 2);
  const root = t.testdir();
  const empty = await df(root);
  t.equal(empty.code, 0, empty.stderr);
  t.ok(empty.records.every((r) => r.total === 0 && r.size === 0 && r.reclaimable === 0));
});
