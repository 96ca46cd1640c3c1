/**
 * The context's content-hash cache (copy/hash-cache.ts) on its own: a hash
 * is reused only for the exact stat it was recorded with; a file changed
 * within the racy margin is not recorded; what is on disk (corrupt, forged,
 * for another root, a planted symlink, oversized) is ignored, never trusted;
 * sourcesDigest gives the same digest with and without it; the number of
 * context files is bounded.
 */
import { lstatSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Store } from '@conveyor/lib-common/store';
import { HASH_CACHE_DIR, MAX_CONTEXTS, openHashCache, RACY_MARGIN_MS } from '../dist/copy/hash-cache.js';
import { sourcesDigest } from '../dist/copy/index.js';
import { contextDir } from './helpers/build.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';

const HEX = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);

function setup(t: Parameters<Parameters<typeof t.test>[1]>[0]) {
  const root = tempStore();
  t.teardown(() => removeStore(root));
  const store = new Store(root);
  const context = contextDir(t, { 'a.txt': 'aaaa\n', dir: { 'b.txt': 'bbbb\n' } });
  const cacheDir = join(root, HASH_CACHE_DIR);
  const cacheFile = () => join(cacheDir, readdirSync(cacheDir)[0]);
  return { store, context, cacheDir, cacheFile };
}

/** `now` far enough after the files' ctime that they are recordable. */
const later = () => Date.now() + RACY_MARGIN_MS + 1000;

t.test('a hash is reused for the same stat only, and written 0700/atomically', async (t) => {
  const { store, context, cacheDir, cacheFile } = setup(t);
  const path = join(context, 'a.txt');
  const cache = await openHashCache(store, context, later());
  t.equal(cache.lookup(path, lstatSync(path)), undefined, 'empty at first');
  cache.record(path, lstatSync(path), HEX);
  await cache.save();
  t.equal(statSync(cacheDir).mode & 0o777, 0o700, 'the directory is closed');
  t.strictSame(
    readdirSync(cacheDir).filter((n) => n.endsWith('.tmp')),
    [],
    'no temporary file left',
  );

  const again = await openHashCache(store, context, later());
  t.equal(again.lookup(path, lstatSync(path)), HEX, 'same stat: the recorded hash');
  const future = new Date(Date.now() + 60_000);
  utimesSync(path, future, future);
  t.equal(again.lookup(path, lstatSync(path)), undefined, 'a new mtime (and ctime): a miss');
  const stats = lstatSync(path);
  const forgedSize = Object.assign(Object.create(Object.getPrototypeOf(stats)), stats, { size: stats.size + 1 });
  t.equal(again.lookup(path, forgedSize), undefined, 'another size: a miss');
  t.ok(readFileSync(cacheFile(), 'utf8').includes(path));
});

t.test('a file changed within the racy margin is not recorded', async (t) => {
  const { store, context } = setup(t);
  const path = join(context, 'a.txt');
  const cache = await openHashCache(store, context, Date.now());
  cache.record(path, lstatSync(path), HEX);
  await cache.save();
  const again = await openHashCache(store, context, later());
  t.equal(again.lookup(path, lstatSync(path)), undefined, 'just written: hashed again next time');
});

t.test('corrupt, forged or foreign cache files are ignored', async (t) => {
  const { store, context, cacheFile } = setup(t);
  const path = join(context, 'a.txt');
  const stats = lstatSync(path);
  const cache = await openHashCache(store, context, later());
  cache.record(path, stats, HEX);
  await cache.save();
  const file = cacheFile();
  const good = JSON.parse(readFileSync(file, 'utf8'));
  const key = `${stats.dev}:${stats.ino}:${stats.size}:${stats.mode}:${stats.mtimeMs}:${stats.ctimeMs}`;
  const cases: [string, string][] = [
    ['not JSON', '{"version":1,'],
    ['another version', JSON.stringify({ ...good, version: 2 })],
    ['another root', JSON.stringify({ ...good, root: '/elsewhere' })],
    ['entries an array', JSON.stringify({ ...good, entries: [] })],
    ['a digest that is not hex', JSON.stringify({ ...good, entries: { [path]: `${key}:${'z'.repeat(64)}` } })],
    ['a short digest', JSON.stringify({ ...good, entries: { [path]: `${key}:abc` } })],
    ['an entry that is not a string', JSON.stringify({ ...good, entries: { [path]: { hash: HEX } } })],
    ['a stat with an extra field', JSON.stringify({ ...good, entries: { [path]: `1:${key}:${HEX}` } })],
  ];
  for (const [name, text] of cases) {
    writeFileSync(file, text);
    const read = await openHashCache(store, context, later());
    t.equal(read.lookup(path, stats), undefined, name);
  }
  writeFileSync(file, JSON.stringify({ ...good, entries: { [path]: `${key}:${OTHER}` } }));
  t.equal((await openHashCache(store, context, later())).lookup(path, stats), OTHER, 'a well-formed entry is used (the control case)');

  // A symlink planted in its place is not followed.
  const elsewhere = join(context, 'planted.json');
  writeFileSync(elsewhere, JSON.stringify({ ...good, entries: { [path]: `${key}:${OTHER}` } }));
  (await import('node:fs')).rmSync(file);
  symlinkSync(elsewhere, file);
  t.equal((await openHashCache(store, context, later())).lookup(path, stats), undefined, 'a symlinked cache file is not read');
});

t.test('sourcesDigest: the same digest through the cache, a changed file changes it', async (t) => {
  const { store, context } = setup(t);
  const options = { rootfs: '', dest: '/app/', sources: ['.'], from: { root: context, trusted: false } };
  const plain = await sourcesDigest(options);
  const first = await openHashCache(store, context, later());
  t.equal(await sourcesDigest({ ...options, hashCache: first }), plain, 'recording');
  await first.save();
  const second = await openHashCache(store, context, later());
  t.equal(await sourcesDigest({ ...options, hashCache: second }), plain, 'from the cache');

  // Same size, same mtime, other bytes: the ctime moved, so the file is read again.
  const path = join(context, 'dir', 'b.txt');
  const { mtime, atime } = statSync(path);
  writeFileSync(path, 'BBBB\n');
  utimesSync(path, atime, mtime);
  const third = await openHashCache(store, context, later());
  const changed = await sourcesDigest({ ...options, hashCache: third });
  t.not(changed, plain);
  t.equal(changed, await sourcesDigest(options), 'what hashing every file gives');
});

t.test('at most MAX_CONTEXTS cache files', async (t) => {
  const { store, cacheDir } = setup(t);
  const stats = { ...lstatSync(store.root), ctimeMs: 0 } as unknown as import('node:fs').Stats;
  for (let i = 0; i < MAX_CONTEXTS + 3; i++) {
    const cache = await openHashCache(store, `/nonexistent/context-${i}`, later());
    cache.record(`/nonexistent/context-${i}/f`, stats, HEX);
    await cache.save();
  }
  t.equal(readdirSync(cacheDir).length, MAX_CONTEXTS);
});
