/**
 * The inflate thread: reads a layer blob, gunzips it with node:zlib (or not,
 * for a plain tar) and hashes the uncompressed stream, on its own event loop,
 * so decompression runs ahead of the main thread instead of waiting for it to
 * dispatch each zlib chunk. Chunks are posted to the main thread, which acks
 * what it consumed; at most MAX_AHEAD bytes are unacknowledged.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { createGunzip } from 'node:zlib';

const MAX_AHEAD = 8 * 1024 * 1024;
const { path, gzip } = workerData as { path: string; gzip: boolean };

const input = createReadStream(path, { highWaterMark: 256 * 1024 });
const hash = createHash('sha256');
let blobBytes = 0;
let ahead = 0;
let paused = false;
input.on('data', (chunk) => {
  blobBytes += chunk.length;
});
const output = gzip ? input.pipe(createGunzip({ chunkSize: 256 * 1024 })) : input;
const failed = (error: Error) => parentPort!.postMessage({ error: { message: error.message, code: (error as NodeJS.ErrnoException).code } });
input.on('error', failed);
output.on('error', failed);
output.on('data', (chunk: Buffer) => {
  hash.update(chunk);
  ahead += chunk.length;
  parentPort!.postMessage({ chunk, blobBytes });
  if (ahead > MAX_AHEAD && !paused) {
    paused = true;
    output.pause();
  }
});
output.on('end', () => parentPort!.postMessage({ end: true, blobBytes, diffID: `sha256:${hash.digest('hex')}` }));
parentPort!.on('message', (msg: { ack: number }) => {
  ahead -= msg.ack;
  if (paused && ahead <= MAX_AHEAD / 2) {
    paused = false;
    output.resume();
  }
});
