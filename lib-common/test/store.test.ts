import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile, readdir, stat, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, Store } from '../src/store.js';
import { sha256, chainIDs } from '../src/digest.js';
import { acquireLock } from '../src/lock.js';

const run = promisify(execFile);
const distStore = fileURLToPath(new URL('../dist/store.js', import.meta.url));

t.test('init writes a valid, empty OCI layout', async (t) => {
  const store = new Store(t.testdir());
  await store.init();
  await store.init();
  t.strictSame(JSON.parse(await readFile(join(store.root, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  t.strictSame((await store.readIndex()).manifests, []);
});

t.test('writeBlob verifies before storing', async (t) => {
  const store = new Store(t.testdir());
  await store.init();
  const data = Buffer.from('{"hello":"world"}');
  await store.writeBlob(sha256(data), data);
  t.ok(await store.hasBlob(sha256(data), data.length));
  t.strictSame(await store.readBlob(sha256(data)), data);
  const wrong = sha256('something else');
  await t.rejects(store.writeBlob(wrong, data), { code: 'ERR_DIGEST_MISMATCH' });
  t.notOk(await store.hasBlob(wrong), 'nothing stored under the claimed digest');
  t.strictSame((await readdir(store.blobsDir)).length, 1, 'no temp files left behind');
});

t.test('readBlob detects a corrupted blob', async (t) => {
  const store = new Store(t.testdir());
  await store.init();
  const data = Buffer.from('original');
  await store.writeBlob(sha256(data), data);
  await writeFile(store.blobPath(sha256(data)), 'tampered');
  await t.rejects(store.readBlob(sha256(data)), { code: 'ERR_STORE_CORRUPT' });
  await t.rejects(store.readBlob(sha256('absent')), { code: 'ERR_IMAGE_NOT_FOUND' });
});

t.test('tagManifest replaces the entry for a ref and keeps others', async (t) => {
  const store = new Store(t.testdir());
  const d = (s: string) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(s), size: s.length });
  await store.tagManifest('docker.io/library/a:latest', d('one'));
  await store.tagManifest('docker.io/library/b:latest', d('two'));
  await store.tagManifest('docker.io/library/a:latest', d('three'));
  const index = await store.readIndex();
  t.equal(index.manifests.length, 2);
  t.equal((await store.lookup('docker.io/library/a:latest'))?.digest, sha256('three'));
  t.equal((await store.lookup('docker.io/library/b:latest'))?.digest, sha256('two'));
  t.equal(await store.lookup('docker.io/library/c:latest'), undefined);
});

t.test('tagManifest writes index.json only when it changes it (an unchanged re-pull or rebuild costs a read)', async (t) => {
  const root = t.testdir();
  const store = new Store(root);
  await store.init();
  const index = join(root, 'index.json');
  const MEDIA = 'application/vnd.oci.image.manifest.v1+json';
  const D = { mediaType: MEDIA, digest: `sha256:${'a'.repeat(64)}`, size: 100 };
  const E = { mediaType: MEDIA, digest: `sha256:${'e'.repeat(64)}`, size: 200 };
  const [A, B] = ['localhost/a:latest', 'localhost/b:latest'];
  const entry = (ref: string, d: typeof D, extra: Record<string, string> = {}) => ({
    ...d,
    annotations: { ...extra, [REF_NAME_ANNOTATION]: ref, [IMAGE_NAME_ANNOTATION]: ref },
  });
  // [name, manifests in index.json, tags, whether tagManifest(tags, D) leaves the file as it is]
  const cases: [string, unknown[], string[], boolean][] = [
    ['empty index', [], [A], false],
    ['tagged as asked', [entry(A, D)], [A], true],
    ['tagged, after other entries', [{ mediaType: MEDIA, digest: E.digest, size: E.size }, entry(B, E), entry(A, D)], [A], true],
    ['malformed entries before it are kept either way', [null, 'x', { digest: 1 }, entry(A, D)], [A], true],
    ['not last: tagging moves it', [entry(A, D), entry(B, E)], [A], false],
    ['another image under the name', [entry(A, E)], [A], false],
    ['another size', [entry(A, { ...D, size: 101 })], [A], false],
    ['an extra annotation', [entry(A, D, { 'org.example': 'x' })], [A], false],
    ['the name twice', [entry(A, D), entry(A, D)], [A], false],
    ['the name twice, apart', [entry(A, D), entry(B, E), entry(A, D)], [A], false],
    ['two tags in order', [entry(A, D), entry(B, D)], [A, B], true],
    ['two tags in the other order', [entry(B, D), entry(A, D)], [A, B], false],
    ['one of two tags missing', [entry(A, D)], [A, B], false],
    ['a tag given twice', [entry(A, D)], [A, A], true],
    ['no tags', [entry(A, D)], [], true],
  ];
  for (const [name, manifests, tags, unchanged] of cases) {
    await writeFile(index, JSON.stringify({ schemaVersion: 2, manifests }));
    const before = await stat(index);
    await store.tagManifest(tags, D);
    const after = (await store.readIndex()).manifests;
    t.equal((await stat(index)).ino === before.ino, unchanged, `${name}: ${unchanged ? 'not rewritten' : 'rewritten'}`);
    const named = after.filter((m) => tags.includes((m as { annotations?: Record<string, string> } | null)?.annotations?.[REF_NAME_ANNOTATION] ?? ''));
    t.strictSame(
      named,
      [...new Set(tags)].map((tag) => entry(tag, D)),
      `${name}: the tags name D, last and in order`,
    );
    t.strictSame(after.slice(after.length - named.length), named, `${name}: last`);
  }
});

t.test('concurrent processes updating index.json lose no entry', async (t) => {
  const root = t.testdir();
  const script = `
    import { Store } from ${JSON.stringify(distStore)};
    const store = new Store(process.argv[1]);
    for (let i = 0; i < 10; i++) {
      const s = process.argv[2] + '-' + i;
      await store.tagManifest('localhost/p' + process.argv[2] + ':t' + i, { mediaType: 'x', digest: 'sha256:' + String(i).padStart(64, '0'), size: 1 });
    }`;
  await Promise.all(Array.from({ length: 6 }, (_, n) => run(process.execPath, ['--input-type=module', '-e', script, root, String(n)])));
  const index = await new Store(root).readIndex();
  t.equal(index.manifests.length, 60, 'all 60 tags present');
});

t.test('a lock file left by an older conveyor whose owner is dead is broken', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'x.lock');
  await mkdir(dir, { recursive: true });
  // A pid that cannot be alive (above pid_max).
  await writeFile(path, '4194305 stale');
  const lock = await acquireLock(path, { timeoutMs: 2000 });
  t.match((await readdir(path))[0], new RegExp(`^${process.pid}\\.`), 'now a lock directory holding our token');
  await lock.release();
});

t.test('a live lock makes the second taker wait, then time out', async (t) => {
  const path = join(t.testdir(), 'y.lock');
  const lock = await acquireLock(path);
  let waited = false;
  await t.rejects(acquireLock(path, { timeoutMs: 100, onWait: () => (waited = true) }), { code: 'ERR_STORE_LOCKED' });
  t.ok(waited);
  await lock.release();
  const again = await acquireLock(path, { timeoutMs: 100 });
  await again.release();
});

t.test('chain IDs follow the OCI definition', async (t) => {
  const a = sha256('a');
  const b = sha256('b');
  const c = sha256('c');
  const chain = chainIDs([a, b, c]);
  t.equal(chain[0], a);
  t.equal(chain[1], sha256(`${a} ${b}`));
  t.equal(chain[2], sha256(`${chain[1]} ${c}`));
});

t.test('ids and digests are validated before they become paths', async (t) => {
  const store = new Store('/nonexistent');
  t.throws(() => store.blobPath('sha256:../../etc/passwd'), { code: 'ERR_INPUT_RECORD' });
  t.throws(() => store.containerDir('../x'), { code: 'ERR_INPUT_RECORD' });
  t.throws(() => store.layerDir('md5:abc'), { code: 'ERR_INPUT_RECORD' });
});

t.test('an empty lock file of an older conveyor (owner crashed before writing its pid) goes stale', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'z.lock');
  await writeFile(path, '');
  const { utimes } = await import('node:fs/promises');
  const old = new Date(Date.now() - 60_000);
  await utimes(path, old, old);
  const lock = await acquireLock(path, { timeoutMs: 2000 });
  t.match((await readdir(path))[0], new RegExp(`^${process.pid}\\.`));
  await lock.release();
});

t.test('an empty lock directory (holder killed while releasing) is taken over', async (t) => {
  const path = join(t.testdir(), 'e.lock');
  await mkdir(path);
  const lock = await acquireLock(path, { timeoutMs: 1000 });
  await lock.release();
  const { existsSync } = await import('node:fs');
  t.notOk(existsSync(path), 'released: gone');
});

t.test('null or malformed index.json entries are skipped with a warning, and kept on rewrite', async (t) => {
  const root = t.testdir();
  const warnings: string[] = [];
  const store = new Store(root, { warn: (m) => warnings.push(m) });
  const good = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: sha256('good'),
    size: 4,
    annotations: { 'org.opencontainers.image.ref.name': 'docker.io/library/good:latest' },
  };
  const junk = [
    null,
    'str',
    7,
    [],
    { digest: 'sha256:nothex' },
    { mediaType: 'x', digest: sha256('a'), size: -1 },
    { mediaType: 'x', digest: sha256('b'), size: 1, annotations: null },
    { mediaType: 'x', digest: sha256('c'), size: 1, annotations: { 'org.opencontainers.image.ref.name': 5 } },
  ];
  await writeFile(join(root, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [...junk, good] }));
  t.equal((await store.lookup('docker.io/library/good:latest'))?.digest, good.digest);
  t.equal(await store.lookup('docker.io/library/none:latest'), undefined);
  t.equal(warnings.length, 2 * junk.length, 'one warning per malformed entry per read');
  t.match(warnings[0], /index\.json: skipping entry 0: not a descriptor object: null/);
  await store.tagManifest('docker.io/library/new:latest', { mediaType: 'x', digest: sha256('new'), size: 3 });
  const raw = JSON.parse(await readFile(join(root, 'index.json'), 'utf8'));
  t.equal(raw.manifests.length, junk.length + 2, "a rewrite keeps the entries it cannot read (they may be another tool's)");
});

t.test('a fresh store is closed to other users; an open one is closed with a warning', async (t) => {
  const { statSync, chmodSync, mkdirSync } = await import('node:fs');
  const base = t.testdir();
  const old = process.umask(0o000);
  try {
    const fresh = new Store(join(base, 'fresh'));
    await fresh.init();
    for (const dir of ['', 'blobs', 'blobs/sha256', 'tmp'])
      t.equal(statSync(join(fresh.root, dir)).mode & 0o7777, 0o700, `${dir || 'root'} 0700 even with umask 000`);
  } finally {
    process.umask(old);
  }
  const openRoot = join(base, 'open');
  mkdirSync(openRoot);
  chmodSync(openRoot, 0o755);
  const warnings: string[] = [];
  const open = new Store(openRoot, { warn: (m) => warnings.push(m) });
  await open.init();
  t.equal(statSync(openRoot).mode & 0o7777, 0o700);
  t.equal(warnings.length, 1);
  t.match(warnings[0], /was mode 0755, open to other users; changed to 0700/);
  await new Store(openRoot, { warn: (m) => warnings.push(m) }).init();
  t.equal(warnings.length, 1, 'no warning for a closed store');
});
