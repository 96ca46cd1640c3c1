/**
 * The inflate thread: reads a layer blob, gunzips it with node:zlib (or not,
 * for a plain tar) and hashes the uncompressed stream, on its own event loop,
 * so decompression runs ahead of the main thread instead of waiting for it to
 * dispatch each zlib chunk. Chunks are posted to the main thread, which acks
 * what it consumed; at most MAX_AHEAD bytes are unacknowledged.
 *
 * One blob at a time, each started by a `start` message and named by its id
 * in every message either way: a thread that finished a blob is kept by the
 * main thread for the next one (read-layer.ts). A read or inflate error is
 * posted once; the main thread then ends the thread.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { createGunzip } from 'node:zlib';
import { collectEvery } from './young-gc.js';

const MAX_AHEAD = 8 * 1024 * 1024;

interface Job {
  id: number;
  ahead: number;
  paused: boolean;
  output: NodeJS.ReadableStream;
}

let job: Job | undefined;
/** Frees the dropped chunks each few MiB (young-gc.ts). */
const collect = collectEvery();

function start(id: number, path: string, gzip: boolean): void {
  const input = createReadStream(path, { highWaterMark: 256 * 1024 });
  const hash = createHash('sha256');
  let blobBytes = 0;
  input.on('data', (chunk) => {
    blobBytes += chunk.length;
  });
  const output = gzip ? input.pipe(createGunzip({ chunkSize: 256 * 1024 })) : input;
  const current: Job = { id, ahead: 0, paused: false, output };
  job = current;
  const failed = (error: Error) => parentPort!.postMessage({ id, error: { message: error.message, code: (error as NodeJS.ErrnoException).code } });
  input.on('error', failed);
  output.on('error', failed);
  output.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    current.ahead += chunk.length;
    parentPort!.postMessage({ id, chunk, blobBytes });
    collect(chunk.length);
    if (current.ahead > MAX_AHEAD && !current.paused) {
      current.paused = true;
      output.pause();
    }
  });
  output.on('end', () => {
    if (job === current) job = undefined;
    parentPort!.postMessage({ id, end: true, blobBytes, diffID: `sha256:${hash.digest('hex')}` });
  });
}

parentPort!.on('message', (msg: { start?: { id: number; path: string; gzip: boolean }; id?: number; ack?: number }) => {
  if (msg.start) {
    start(msg.start.id, msg.start.path, msg.start.gzip);
    return;
  }
  const current = job;
  if (!current || msg.id !== current.id || msg.ack === undefined) return;
  current.ahead -= msg.ack;
  if (current.paused && current.ahead <= MAX_AHEAD / 2) {
    current.paused = false;
    current.output.resume();
  }
});
