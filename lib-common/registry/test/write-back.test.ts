/**
 * blob.ts's early write-back (WriteBack), on a file handle whose datasyncs
 * the test ends by hand: one started per WRITE_BACK_BYTES written, never more
 * than MAX_WRITE_BACKS running, `settle` waiting for every one, and a failed
 * one reported as ERR_STORE_IO naming the file (the commit's fsync, on
 * another descriptor, might not report it again). Against a real file: the
 * bytes written are intact after settle.
 */
import t from 'tap';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { MAX_WRITE_BACKS, WRITE_BACK_BYTES, WriteBack } from '../src/blob.js';

/** A FileHandle whose datasync calls wait until the test settles them. */
function fakeHandle() {
  const calls: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  const handle = {
    datasync: () => new Promise<void>((resolve, reject) => calls.push({ resolve, reject })),
  } as unknown as FileHandle;
  return { handle, calls };
}

const MB = 1024 * 1024;

t.test('a datasync per WRITE_BACK_BYTES written, whatever the pieces', async (t) => {
  const cases: [string, number[], number][] = [
    ['less than one step', [WRITE_BACK_BYTES - 1], 0],
    ['exactly one step', [WRITE_BACK_BYTES], 1],
    ['one step in 1 MiB pieces', Array(WRITE_BACK_BYTES / MB).fill(MB), 1],
    ['three steps in 1 MiB pieces', Array((3 * WRITE_BACK_BYTES) / MB).fill(MB), 3],
    ['one large piece counts once', [5 * WRITE_BACK_BYTES], 1],
    ['a step and a half', [WRITE_BACK_BYTES, WRITE_BACK_BYTES / 2], 1],
  ];
  for (const [name, pieces, expected] of cases) {
    const { handle, calls } = fakeHandle();
    const writeBack = new WriteBack(handle);
    for (const bytes of pieces) writeBack.wrote(bytes);
    t.equal(calls.length, expected, name);
    for (const call of calls) call.resolve();
    await writeBack.settle('/x');
  }
});

t.test('at most MAX_WRITE_BACKS running; settle waits for them all', async (t) => {
  const { handle, calls } = fakeHandle();
  const writeBack = new WriteBack(handle);
  for (let i = 0; i < MAX_WRITE_BACKS + 3; i++) writeBack.wrote(WRITE_BACK_BYTES);
  t.equal(calls.length, MAX_WRITE_BACKS, 'no more than the cap start');
  let settled = false;
  const settling = writeBack.settle('/x').then(() => {
    settled = true;
  });
  calls[0].resolve();
  await new Promise((resolve) => setImmediate(resolve));
  writeBack.wrote(WRITE_BACK_BYTES);
  t.equal(calls.length, MAX_WRITE_BACKS + 1, 'one ended: another may start');
  for (const call of calls.slice(1, -1)) call.resolve();
  await new Promise((resolve) => setImmediate(resolve));
  t.notOk(settled, 'settle waits for the last one still running');
  calls.at(-1)!.resolve();
  await settling;
  t.ok(settled);
});

t.test('a failed datasync is ERR_STORE_IO naming the file, once all have ended', async (t) => {
  const { handle, calls } = fakeHandle();
  const writeBack = new WriteBack(handle);
  writeBack.wrote(WRITE_BACK_BYTES);
  writeBack.wrote(WRITE_BACK_BYTES);
  calls[0].reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', syscall: 'fdatasync' }));
  calls[1].resolve();
  await t.rejects(writeBack.settle('/store/ingest/abc'), { code: 'ERR_STORE_IO', message: /\/store\/ingest\/abc/ });
});

t.test('on a real file: the datasyncs leave the bytes as written', async (t) => {
  const path = join(t.testdir(), 'blob');
  const file = await open(path, 'w');
  const writeBack = new WriteBack(file);
  const piece = Buffer.alloc(MB, 7);
  for (let i = 0; i < (2 * WRITE_BACK_BYTES) / MB + 1; i++) {
    await file.write(piece);
    writeBack.wrote(piece.length);
  }
  await writeBack.settle(path);
  await file.close();
  const bytes = await readFile(path);
  t.equal(bytes.length, 2 * WRITE_BACK_BYTES + MB);
  t.ok(
    bytes.every((b) => b === 7),
    'every byte as written',
  );
});
