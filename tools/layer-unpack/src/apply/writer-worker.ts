/**
 * The file-creation thread. The main thread parses the tar and verifies every
 * path (the inflate thread hashes gzip and plain layers; the main thread, zstd
 * ones); this thread only executes the resulting operations (writer-ops.ts),
 * strictly in the order they were queued, with synchronous system calls (no
 * per-call event loop round trip). After the first error it stops and
 * reports it; later operations are ignored.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { WriterOp } from './writer.js';
import { collectEvery, keepYoungGenerationSmall } from '../young-gc.js';
import { closeAll, runOp } from './writer-ops.js';

// Setting up this thread's heap put the process's young-generation growth back (young-gc.ts).
keepYoungGenerationSmall();

let failed = false;
/** Large files' data arrives in transferred buffers; the dropped ones are freed each few MiB (young-gc.ts). */
const collect = collectEvery();
/** File data shared with the main thread (see writer.ts); ops name their slice. */
const ring = new Uint8Array((workerData as { ring: SharedArrayBuffer }).ring);

parentPort!.on('message', (ops: WriterOp[]) => {
  if (failed) return;
  let bytes = 0;
  let ringBytes = 0;
  for (const op of ops) {
    try {
      runOp(op, ring);
    } catch (error) {
      failed = true;
      closeAll();
      const err = error as NodeJS.ErrnoException;
      parentPort!.postMessage({ error: { message: err.message, code: err.code, syscall: err.syscall, path: err.path } });
      return;
    }
    if (op.op === 'file' || op.op === 'write') {
      if (op.data) {
        bytes += op.data.length;
        collect(op.data.length);
      }
      if (op.ring) {
        bytes += op.ring[1];
        ringBytes += op.ring[2];
      }
    }
  }
  parentPort!.postMessage({ done: ops.length, bytes, ring: ringBytes });
});
