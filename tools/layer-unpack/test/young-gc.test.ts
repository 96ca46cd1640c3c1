/**
 * young-gc.ts: the threads that drop inflated chunks (the inflate thread, the
 * main thread receiving copies, a writer thread receiving large files' data)
 * collect their young generation every COLLECT_EVERY bytes, so dropped buffers
 * are freed within a few MiB instead of after V8's ~64 MB external-memory
 * threshold (peak RSS, issue 17). Checked by structure: the counter's
 * boundaries, gc() found on the main thread and in a worker thread, and the
 * collections an inflate-thread unpack causes on the main thread.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import t from 'tap';
import { END, rawHeader } from './helpers/tars.js';
import type { Applier } from '../dist/apply/applier.js';
import { applyLayer } from '../dist/read-layer.js';
import { canCollect, COLLECT_EVERY, collectEvery, collections } from '../dist/young-gc.js';

const MiB = 1024 * 1024;

t.test('collectEvery collects once per `every` bytes, counted across chunks', async (t) => {
  const cases: { name: string; every: number; chunks: number[]; fired: boolean[] }[] = [
    { name: 'below the threshold', every: 10, chunks: [3, 3, 3], fired: [false, false, false] },
    { name: 'exactly at it', every: 10, chunks: [4, 6], fired: [false, true] },
    { name: 'counting restarts after a collection', every: 10, chunks: [10, 9, 1], fired: [true, false, true] },
    { name: 'one chunk larger than it', every: 10, chunks: [25, 1], fired: [true, false] },
    {
      name: 'the default: 256 KiB chunks, one in 16',
      every: COLLECT_EVERY,
      chunks: Array(17).fill(256 * 1024),
      fired: [...Array(15).fill(false), true, false],
    },
  ];
  for (const c of cases) {
    const collect = collectEvery(c.every);
    const before = collections();
    t.same(
      c.chunks.map((n) => collect(n)),
      c.fired,
      c.name,
    );
    t.equal(collections() - before, c.fired.filter(Boolean).length, `${c.name}: collections counted`);
  }
  t.equal(COLLECT_EVERY, 4 * MiB, "the default keeps a thread's dropped chunks to a few MiB");
});

t.test('gc() is found on the main thread and in a worker thread', async (t) => {
  t.ok(canCollect(), 'main thread');
  const url = new URL('../dist/young-gc.js', import.meta.url).href;
  const worker = new Worker(
    `import(${JSON.stringify(url)}).then((m) => require('node:worker_threads').parentPort.postMessage(m.canCollect() && m.collectEvery(1)(1)))`,
    { eval: true },
  );
  const answer = await new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  await worker.terminate();
  t.equal(answer, true, 'worker thread collects');
});

t.test('a layer inflated on a thread: the main thread collects what it received, once per 4 MiB', async (t) => {
  const tar = join(t.testdir({}), 'big.tar');
  const size = 12 * MiB;
  const fd = openSync(tar, 'w');
  writeSync(fd, rawHeader('big', '0', size));
  for (let left = size; left > 0; left -= MiB) writeSync(fd, Buffer.alloc(MiB));
  writeSync(fd, END);
  closeSync(fd);
  // Takes the data and drops it (what the writer does once its thread has written it).
  let received = 0;
  const applier = {
    opts: { maxBytes: 2 ** 40, maxEntries: 1000 },
    setFailureHandler: () => undefined,
    entry: async () => ({
      write(chunk: Uint8Array) {
        received += chunk.length;
      },
      end() {},
    }),
    busy: false,
    room: async () => undefined,
    finishLayer: async () => undefined,
  } as unknown as Applier;
  const before = collections();
  await applyLayer({ path: tar, compression: 'none', label: 'big' }, applier);
  const ran = collections() - before;
  t.equal(received, size, 'the whole file was read');
  t.ok(ran >= 3, `${ran} collections for a ${size}-byte layer (one per ${COLLECT_EVERY} bytes received)`);
});
