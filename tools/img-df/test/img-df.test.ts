/**
 * img-df on a real store: images imported by skopeo, a layer unpacked, a
 * running detached container (runc) keeping its image and layer active.
 * Reclaimable is checked against img-prune -a --dry-run's own report; the
 * rows' sum against img-prune -a (which removes the build cache too), after
 * a real img-build, and again once its tag moved to another build.
 */
import t from 'tap';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
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
    ['images', 'layers', 'containers', 'build-cache'],
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

t.test('the build cache: entries, what they keep, what img-prune --build-cache would free', async (t) => {
  const root = tempStore();
  t.teardown(async () => {
    await deleteAllContainers(root);
    removeStore(root);
  });
  busyboxRootfs(root);
  const none = await df(root);
  t.match(none.byKind['build-cache'], { type: 'df', v: 1, total: 0, active: 0, size: 0, reclaimable: 0 });

  const context = t.testdir({ Dockerfile: 'FROM busybox\nRUN echo cached > /cached.txt\nENV A=1\n' });
  const built = await runTool('img-build', ['--root', root, '-q', '-t', 'df-built:1', context], { timeoutMs: 120_000 });
  t.equal(built.code, 0, built.stderr);
  const entries = () => readdirSync(join(root, 'build-cache')).filter((name) => name.endsWith('.json'));
  const entryBytes = () => entries().reduce((sum, name) => sum + statSync(join(root, 'build-cache', name)).size, 0);
  const tagged = await df(root);
  t.equal(tagged.code, 0, tagged.stderr);
  t.match(tagged.byKind['build-cache'], { total: entries().length, active: 0 });
  t.ok(entries().length >= 2, 'a RUN and an ENV step');
  t.ok(tagged.byKind['build-cache'].size > entryBytes(), 'the entries and the blobs they list');
  // img-prune -a removes the build cache too: its total is the images', the layers' and the build cache's reclaimable.
  const pruneAll = async () => {
    const result = await runTool('img-prune', ['--root', root, '-a', '--dry-run']);
    t.equal(result.code, 0, result.stderr);
    return result.records.filter((r) => r.type === 'freed').reduce((sum, r) => sum + r.size, 0);
  };
  const rows = (d: typeof tagged) => d.byKind.images.reclaimable + d.byKind.layers.reclaimable + d.byKind['build-cache'].reclaimable;
  t.equal(rows(tagged), await pruneAll(), 'images + layers + build cache = what img-prune -a frees');
  const whileTagged = tagged.byKind['build-cache'].reclaimable;
  t.ok(whileTagged >= entryBytes(), 'at least the entries');
  const listed = tagged.byKind['build-cache'].size;

  // The tag moves to a new build: the first RUN's layer is kept only by the cache now.
  writeFileSync(join(context, 'Dockerfile'), 'FROM busybox\nRUN echo other > /other.txt\n');
  const rebuilt = await runTool('img-build', ['--root', root, '-q', '-t', 'df-built:1', context], { timeoutMs: 120_000 });
  t.equal(rebuilt.code, 0, rebuilt.stderr);
  const moved = await df(root);
  t.equal(rows(moved), await pruneAll(), 'again, with the tag moved');
  t.ok(moved.byKind['build-cache'].reclaimable > whileTagged, "the first RUN's layer and configs count now");
  t.ok(moved.byKind['build-cache'].size > listed, 'the new entries and their blobs');
  const untagged = moved;

  // A forged entry (a path where a digest belongs) is counted but lists nothing.
  writeFileSync(join(root, 'build-cache', `${'f'.repeat(64)}.json`), JSON.stringify({ version: 1, blobs: ['../../etc/passwd'], chainIDs: [] }));
  const forged = await df(root);
  t.equal(forged.byKind['build-cache'].total, untagged.byKind['build-cache'].total + 1);
  t.ok(forged.byKind['build-cache'].size < untagged.byKind['build-cache'].size + 1000, 'only its own bytes');

  const table = await df(root, ['--table']);
  t.match(table.stdout, /\nBuild Cache\s+\d+\s+0\s+\S+\s+\S+ \(\d+%\)\n/);
});
