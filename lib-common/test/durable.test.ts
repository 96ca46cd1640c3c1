import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publishFile, syncDir, syncFilesystem, writeFileDurable } from '../src/durable.js';
import { ConveyorError, isStorageErrno, storeIoError, toConveyorError } from '../src/errors.js';
import { Store } from '../src/store.js';
import { sha256 } from '../src/digest.js';

const run = promisify(execFile);
const distDurable = fileURLToPath(new URL('../dist/durable.js', import.meta.url));
const distStore = fileURLToPath(new URL('../dist/store.js', import.meta.url));

/** An errno error as Node's fs makes them. */
function errno(code: string, syscall: string, path?: string, message = `${code}: something, ${syscall}`): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, syscall, ...(path === undefined ? {} : { path }) });
}

t.test('writeFileDurable writes and replaces, leaving no temporary file', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'index.json');
  await writeFileDurable(path, 'one');
  await writeFileDurable(path, Buffer.from('two'), { mode: 0o600 });
  t.equal(await readFile(path, 'utf8'), 'two');
  t.strictSame(await readdir(dir), ['index.json']);
  const temp = join(dir, 'named.tmp');
  await writeFileDurable(join(dir, 'state.json'), '{}', { temp, mode: 0o600 });
  t.equal((await stat(join(dir, 'state.json'))).mode & 0o077, 0, 'mode applied');
  t.strictSame((await readdir(dir)).sort(), ['index.json', 'state.json']);
});

t.test('a failed write is ERR_STORE_IO naming the target, and removes its temporary file', async (t) => {
  const dir = t.testdir({ sub: {} });
  // The target is a directory: the rename fails after the temporary file was written.
  await mkdir(join(dir, 'sub', 'target'));
  await t.rejects(writeFileDurable(join(dir, 'sub', 'target'), 'x'), {
    code: 'ERR_STORE_IO',
    message: new RegExp(`cannot write ${join(dir, 'sub', 'target')}: `),
    details: { path: join(dir, 'sub', 'target'), errno: 'EISDIR' },
  });
  t.strictSame(await readdir(join(dir, 'sub')), ['target'], 'no temporary file left');
  await t.rejects(writeFileDurable(join(dir, 'missing', 'x'), 'x'), { code: 'ERR_STORE_IO', details: { errno: 'ENOENT' } });
  await t.rejects(syncDir(join(dir, 'missing')), { code: 'ERR_STORE_IO', message: /cannot sync .*missing/ });
  await t.rejects(syncFilesystem(join(dir, 'missing')), { code: 'ERR_STORE_IO', message: /cannot sync the file system of .*missing: .+/ });
  await syncFilesystem(dir);
});

t.test('publishFile moves a finished file under its name', async (t) => {
  const dir = t.testdir({ 'ingest.part': 'blob bytes' });
  await publishFile(join(dir, 'ingest.part'), join(dir, 'blob'));
  t.strictSame(await readdir(dir), ['blob']);
  t.equal(await readFile(join(dir, 'blob'), 'utf8'), 'blob bytes');
  await t.rejects(publishFile(join(dir, 'gone'), join(dir, 'blob2')), { code: 'ERR_STORE_IO', message: /cannot sync .*gone/ });
});

/**
 * The order of the system calls, seen by strace: the file's data is synced
 * before the rename that publishes it, and the directory after it. Without
 * the fsyncs (or in another order) a crash could publish a name whose bytes
 * never reached the disk.
 */
t.test('the file is fsynced before the rename, the directory after (strace)', async (t) => {
  const dir = t.testdir({ part: 'downloaded' });
  const script = `
    const { writeFileDurable, publishFile } = await import(${JSON.stringify(distDurable)});
    const { Store } = await import(${JSON.stringify(distStore)});
    await writeFileDurable(${JSON.stringify(join(dir, 'small.json'))}, '{}');
    await publishFile(${JSON.stringify(join(dir, 'part'))}, ${JSON.stringify(join(dir, 'blob'))});
    await new Store(${JSON.stringify(join(dir, 'store'))}).init();
  `;
  const log = join(dir, 'strace.log');
  await run('strace', [
    '-f',
    '-qq',
    '-y',
    '-e',
    'trace=fsync,fdatasync,rename,renameat,renameat2',
    '-o',
    log,
    process.execPath,
    '--input-type=module',
    '-e',
    script,
  ]);
  const lines = (await readFile(log, 'utf8')).split('\n').filter((line) => /fsync|rename/.test(line) && !line.includes('resumed'));
  const index = (pattern: RegExp) => lines.findIndex((line) => pattern.test(line));
  const check = (what: string, file: RegExp, renamed: RegExp, dirOf: string) => {
    const synced = index(file);
    const moved = index(renamed);
    const dirSynced = lines.findIndex((line, i) => i > moved && new RegExp(`fsync\\(\\d+<${dirOf}>\\)`).test(line));
    t.ok(synced >= 0 && moved > synced, `${what}: fsync of the file before the rename`);
    t.ok(dirSynced > moved, `${what}: fsync of the directory after the rename`);
  };
  check('writeFileDurable', /fsync\(\d+<.*small\.json\.[0-9a-f]+\.tmp>\)/, /rename.*small\.json\.[0-9a-f]+\.tmp.*small\.json"/, dir);
  check('publishFile', /fsync\(\d+<.*\/part>\)/, /rename.*\/part".*\/blob"/, dir);
  check(
    'Store.init index.json',
    /fsync\(\d+<.*index\.json\.\d+\.[0-9a-f]+\.tmp>\)/,
    /rename.*index\.json\.\d+\.[0-9a-f]+\.tmp.*index\.json"/,
    join(dir, 'store'),
  );
});

/**
 * syncFilesystemShared: callers that ask while a sync runs share the next one
 * (strace counts the syncfs calls of the `sync` children), a caller that asks
 * later gets a sync of its own, and a failure reaches every caller that
 * waited for that sync.
 */
t.test('syncFilesystemShared, syncDirShared: one sync for the callers that wait together (strace)', async (t) => {
  const dir = t.testdir({});
  const script = `
    const { syncDirShared, syncFilesystemShared } = await import(${JSON.stringify(distDurable)});
    const dir = ${JSON.stringify(dir)};
    // Five at once: the first starts a sync, the four others share the one after it.
    await Promise.all([1, 2, 3, 4, 5].map(() => syncFilesystemShared(dir)));
    // Later: a sync of its own.
    await syncFilesystemShared(dir);
    const missing = dir + '/missing';
    const results = await Promise.allSettled([syncFilesystemShared(missing), syncFilesystemShared(missing)]);
    console.log(JSON.stringify(results.map((r) => r.status === 'rejected' && r.reason.code)));
    // The directory fsync shares the same way: three at once, two fsyncs.
    await Promise.all([1, 2, 3].map(() => syncDirShared(dir)));
  `;
  const log = join(dir, 'strace.log');
  const { stdout } = await run('strace', ['-f', '-qq', '-y', '-e', 'trace=syncfs,fsync', '-o', log, process.execPath, '--input-type=module', '-e', script]);
  t.strictSame(JSON.parse(stdout), ['ERR_STORE_IO', 'ERR_STORE_IO'], 'each caller gets the failure');
  const syncs = (await readFile(log, 'utf8')).split('\n').filter((line) => /syncfs\(/.test(line) && !line.includes('resumed'));
  t.equal(syncs.length, 3, 'two syncs for the five callers, one for the later one (the missing dir fails before syncfs)');
  const dirSyncs = (await readFile(log, 'utf8'))
    .split('\n')
    .filter((line) => line.includes(`fsync(`) && line.includes(`<${dir}>`) && !line.includes('resumed'));
  t.equal(dirSyncs.length, 2, 'syncDirShared: two fsyncs of the directory for three callers');
});

t.test('Store writes name the store and leave nothing behind on failure', async (t) => {
  const root = t.testdir();
  const store = new Store(root);
  await store.init();
  const data = Buffer.from('a blob');
  await store.writeBlob(sha256(data), data);
  t.strictSame(await readdir(store.blobsDir), [sha256(data).slice(7)]);
  await writeFile(join(root, 'part'), 'x');
  await t.rejects(store.commitIngest(sha256('x'), join(root, 'nope')), { code: 'ERR_STORE_IO', message: new RegExp(`^store ${root}: cannot sync `) });
  // index.json replaced by a directory: the write fails, the store says where.
  const index = join(root, 'index.json');
  await store.writeFileAtomic(index, '{"schemaVersion":2,"manifests":[]}');
  await t.rejects(store.writeFileAtomic(join(root, 'blobs'), 'x'), {
    code: 'ERR_STORE_IO',
    message: new RegExp(`^store ${root}: cannot write ${join(root, 'blobs')}: `),
  });
  t.notOk(
    (await readdir(root)).some((name) => name.endsWith('.tmp')),
    'no temporary file left',
  );
});

t.test('storeIoError says what a storage errno means, and where', async (t) => {
  const cases: [NodeJS.ErrnoException, { path?: string; doing?: string; store?: string }, RegExp, RegExp | undefined][] = [
    [errno('ENOSPC', 'write'), { path: '/s/blobs/x' }, /^cannot write \/s\/blobs\/x: no space left on device \(ENOSPC\)$/, /img-prune/],
    [errno('EDQUOT', 'write'), { path: '/s/x', doing: 'cannot pack y into' }, /^cannot pack y into \/s\/x: disk quota exceeded \(EDQUOT\)$/, /quota/],
    [errno('EROFS', 'mkdir', '/s/leases/a'), {}, /^cannot create \/s\/leases\/a: read-only file system \(EROFS\)$/, /read-write/],
    [errno('EROFS', 'open', '/s/index.json'), { store: '/s' }, /^store \/s: cannot open \/s\/index.json: read-only file system \(EROFS\)$/, /img-ls/],
    [errno('EIO', 'fsync'), { path: '/s/blobs/y', doing: 'cannot sync' }, /^cannot sync \/s\/blobs\/y: input\/output error \(EIO\)$/, /dmesg/],
    [
      errno('EACCES', 'open', '/s/a', "EACCES: permission denied, open '/s/a'"),
      {},
      /^cannot open \/s\/a: EACCES: permission denied, open '\/s\/a'$/,
      undefined,
    ],
    // A path outside the store is not said to be in it.
    [errno('ENOSPC', 'write'), { path: '/elsewhere/x', store: '/s' }, /^cannot write \/elsewhere\/x: no space left/, /img-prune/],
    [errno('ENOSPC', 'write'), { path: '/s2/x', store: '/s' }, /^cannot write \/s2\/x: /, /img-prune/],
  ];
  for (const [error, context, message, hint] of cases) {
    const err = storeIoError(error, context);
    t.equal(err.code, 'ERR_STORE_IO', error.code);
    t.match(err.message, message, `${error.code} ${JSON.stringify(context)}`);
    if (hint) t.match(err.hint, hint);
    else t.equal(err.hint, undefined);
    t.equal(err.details?.errno, error.code);
    t.equal(err.cause, error, 'the errno kept as the cause');
  }
  const own = new ConveyorError('ERR_DIGEST_MISMATCH', 'x');
  t.equal(storeIoError(own), own, 'a ConveyorError passes through');
  t.ok(isStorageErrno(errno('ENOSPC', 'write')));
  t.notOk(isStorageErrno(errno('ENOENT', 'open')));
  t.notOk(isStorageErrno(undefined));
});

t.test('toConveyorError: storage errnos in words, naming the store', async (t) => {
  const raw = errno('EROFS', 'mkdir', '/s/leases/x');
  t.match(toConveyorError(raw, 'ERR_INTERNAL', { store: '/s' }), {
    code: 'ERR_STORE_IO',
    message: /^store \/s: cannot create \/s\/leases\/x: read-only file system \(EROFS\)$/,
  });
  t.match(toConveyorError(raw), { code: 'ERR_STORE_IO', message: /^cannot create \/s\/leases\/x: read-only/ });
  // A caller's own fallback code is kept.
  t.match(toConveyorError(raw, 'ERR_AUTH_HELPER'), { code: 'ERR_AUTH_HELPER' });
  // An ERR_STORE_IO about a path in the store gets the store's name once; others pass unchanged.
  const inStore = storeIoError(errno('ENOSPC', 'write'), { path: '/s/blobs/x' });
  const named = toConveyorError(inStore, 'ERR_INTERNAL', { store: '/s' });
  t.match(named.message, /^store \/s: cannot write \/s\/blobs\/x: no space left on device \(ENOSPC\)$/);
  t.equal(toConveyorError(named, 'ERR_INTERNAL', { store: '/s' }).message, named.message, 'named once');
  const outside = storeIoError(errno('ENOSPC', 'write'), { path: '/tmp/x' });
  t.equal(toConveyorError(outside, 'ERR_INTERNAL', { store: '/s' }), outside);
  const other = new ConveyorError('ERR_IMAGE_NOT_FOUND', 'x', { details: { path: '/s/x' } });
  t.equal(toConveyorError(other, 'ERR_INTERNAL', { store: '/s' }), other);
});
