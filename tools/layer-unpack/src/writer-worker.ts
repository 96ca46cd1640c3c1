/**
 * The file-creation thread. The main thread parses, hashes and verifies every
 * path; this thread only executes the resulting operations (writer-ops.ts),
 * strictly in the order they were queued, with synchronous system calls (no
 * per-call event loop round trip). After the first error it stops and
 * reports it; later operations are ignored.
 */
import { parentPort } from 'node:worker_threads';
import type { WriterOp } from './writer.js';
import { closeAll, runOp } from './writer-ops.js';

let failed = false;

parentPort!.on('message', (ops: WriterOp[]) => {
  if (failed) return;
  let bytes = 0;
  for (const op of ops) {
    try {
      runOp(op);
    } catch (error) {
      failed = true;
      closeAll();
      const err = error as NodeJS.ErrnoException;
      parentPort!.postMessage({ error: { message: err.message, code: err.code, syscall: err.syscall, path: err.path } });
      return;
    }
    if (op.op === 'file' && op.data) bytes += op.data.length;
    else if (op.op === 'write') bytes += op.data.length;
  }
  parentPort!.postMessage({ done: ops.length, bytes });
});
