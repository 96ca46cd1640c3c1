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
import { ENTRY, HASH_CACHE_DIR, MAX_CONTEXTS, openHashCache, RACY_MARGIN_MS, statKey } from '../dist/copy/hash-cache.js';
import { execFileSync } from 'node:child_process';
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

/** setup, with HEX recorded and saved for a.txt: its path and stat, the cache file and what it holds. */
async function savedHex(t: Parameters<Parameters<typeof t.test>[1]>[0]) {
  const { store, context, cacheFile } = setup(t);
  const path = join(context, 'a.txt');
  const stats = lstatSync(path);
  const cache = await openHashCache(store, context, later());
  cache.record(path, stats, HEX);
  await cache.save();
  const file = cacheFile();
  return { store, context, path, stats, file, good: JSON.parse(readFileSync(file, 'utf8')) };
}

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
  const { store, context, path, stats, file, good } = await savedHex(t);
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

t.test('lookup answers as ENTRY matched against the stat would, on a table of entries and stats', async (t) => {
  const { store, context, path, stats: real, file, good } = await savedHex(t);
  // Stats as the kernel gives them (integers, and times with and without a fraction), and odd times.
  const withTimes = (mtimeMs: number, ctimeMs: number) =>
    Object.assign(Object.create(Object.getPrototypeOf(real)), real, { mtimeMs, ctimeMs }) as import('node:fs').Stats;
  const statsTable = [real, withTimes(1700000000000, 1700000000000), withTimes(1700000000123.456, 1700000000999.001), withTimes(1e21, -1.5), withTimes(0, 0)];
  let hits = 0;
  for (const stats of statsTable) {
    const key = statKey(stats);
    const entries = [
      `${key}:${HEX}`,
      `${key}:${OTHER}`,
      `${key}:${HEX.toUpperCase()}`,
      `${key}:${HEX.slice(1)}`,
      `${key}:${HEX}0`,
      `${key}::${HEX}`,
      `${key};${HEX}`,
      `${key}0:${HEX}`,
      `1${key}:${HEX}`,
      `1:${key}:${HEX}`,
      ` ${key}:${HEX}`,
      `${key}:${HEX}\n`,
      `${key}:${'g'.repeat(64)}`,
      `${key.replace(/:\d+:/, ':9:')}:${HEX}`,
      `${statKey(real)}:${HEX}`,
      HEX,
      '',
    ];
    for (const entry of entries) {
      writeFileSync(file, JSON.stringify({ ...good, entries: { [path]: entry } }));
      const match = ENTRY.exec(entry);
      const expected = match && match[1] === key ? match[2] : undefined;
      if (expected !== undefined) hits++;
      t.equal((await openHashCache(store, context, later())).lookup(path, stats), expected, `${key} / ${JSON.stringify(entry)}`);
    }
  }
  t.ok(hits >= statsTable.length * 2, 'the table has hits as well as misses');
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

t.test('xattrs: an unchanged listing takes what getfattr found from the cache; a changed xattr, a racy or forged record do not', async (t) => {
  const { store, context, cacheFile } = setup(t);
  const file = join(context, 'dir', 'b.txt');
  execFileSync('setfattr', ['-n', 'user.conveyor', '-v', 'one', file]);
  const options = { rootfs: '', dest: '/app/', sources: ['.'], from: { root: context, trusted: false } };
  const plain = await sourcesDigest(options);
  // Without getfattr on the PATH, only a digest that needs no getfattr succeeds.
  const withoutGetfattr = async <T>(work: () => Promise<T>): Promise<T> => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      return await work();
    } finally {
      process.env.PATH = path;
    }
  };

  // Just changed (racy): not recorded, so the next build still asks getfattr.
  const racy = await openHashCache(store, context, Date.now());
  t.equal(await sourcesDigest({ ...options, hashCache: racy }), plain, 'racy: same digest');
  await racy.save();
  const afterRacy = await openHashCache(store, context, later());
  await t.rejects(
    withoutGetfattr(() => sourcesDigest({ ...options, hashCache: afterRacy })),
    { code: 'ERR_STORE_IO' },
    'a racy listing was not recorded',
  );

  const first = await openHashCache(store, context, later());
  t.equal(await sourcesDigest({ ...options, hashCache: first }), plain, 'recording');
  await first.save();
  t.match(readFileSync(cacheFile(), 'utf8'), /"user\.conveyor":"6f6e65"/, 'the kept xattr is recorded, hex');
  const second = await openHashCache(store, context, later());
  t.equal(await withoutGetfattr(() => sourcesDigest({ ...options, hashCache: second })), plain, 'from the cache, no getfattr');

  // Another value: the ctime moved, so getfattr runs again and the digest follows the new value.
  execFileSync('setfattr', ['-n', 'user.conveyor', '-v', 'two', file]);
  const third = await openHashCache(store, context, later());
  await t.rejects(
    withoutGetfattr(() => sourcesDigest({ ...options, hashCache: third })),
    { code: 'ERR_STORE_IO' },
    'a changed xattr is a miss',
  );
  const changed = await sourcesDigest({ ...options, hashCache: await openHashCache(store, context, later()) });
  t.not(changed, plain);
  t.equal(changed, await sourcesDigest(options), 'what getfattr gives');

  // A forged record (a value that is not hex) is ignored: getfattr runs.
  const recorded = await openHashCache(store, context, later());
  await sourcesDigest({ ...options, hashCache: recorded });
  await recorded.save();
  const text = readFileSync(cacheFile(), 'utf8');
  t.match(text, /"user\.conveyor":"74776f"/);
  writeFileSync(cacheFile(), text.replace('"74776f"', '"7477zz"'));
  await t.rejects(
    withoutGetfattr(async () => sourcesDigest({ ...options, hashCache: await openHashCache(store, context, later()) })),
    { code: 'ERR_STORE_IO' },
    'a forged record is not used',
  );
  writeFileSync(cacheFile(), text);
  t.equal(
    await withoutGetfattr(async () => sourcesDigest({ ...options, hashCache: await openHashCache(store, context, later()) })),
    changed,
    'the control case',
  );
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
