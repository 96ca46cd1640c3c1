/**
 * The inflate thread: reads a layer blob, gunzips it with node:zlib (or not,
 * for a plain tar) and hashes the uncompressed stream, on its own event loop,
 * so decompression runs ahead of the main thread instead of waiting for it to
 * dispatch each zlib chunk.
 *
 * Memory (issue 17): inflated chunks are transferred to the main thread, not
 * copied (a copy is a fresh allocation in the main thread's malloc arena per
 * chunk, freed only when the main thread collects, and those megabytes stayed
 * in its arena). Running ahead happens here: up to MAX_AHEAD bytes wait in
 * this thread's queue, and at most IN_MAIN bytes are posted and not yet
 * acknowledged (the main thread acks what its parser consumed), so a chunk
 * reaches the main thread only shortly before it is parsed and dies young
 * there. A chunk is transferred only when it owns its whole ArrayBuffer
 * (zlib's full output buffers); a part of a shared one is copied first.
 *
 * Blobs are started by a `start` message and named by their id in every
 * message either way; a thread reads up to two at once (layers unpacked at
 * once share it: each thread costs ~10 MB), each on its own streams, and one
 * that finished a blob is kept by the main thread for the next (read-layer.ts).
 * A blob still downloading is read as it grows (follow-file.ts); a `commit`
 * message says it is complete in the store.
 * A read or inflate error is posted once and ends that blob's streams; an
 * `abort` ends them too, and no message for that blob follows. The main thread
 * ends a thread whose failed blob was its only one.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { parentPort } from 'node:worker_threads';
import { createGunzip } from 'node:zlib';
import { type FollowedFile, followFile } from './follow-file.js';
import { collectEvery, keepYoungGenerationSmall } from './young-gc.js';

// Setting up this thread's heap put the process's young-generation growth back (young-gc.ts).
keepYoungGenerationSmall();

/** Inflated bytes queued here, not yet posted, before inflating pauses. */
const MAX_AHEAD = 2 * 1024 * 1024;
/** Bytes posted to the main thread and not acknowledged yet. */
const IN_MAIN = 512 * 1024;

interface Job {
  id: number;
  /** Inflated chunks not posted yet, and their bytes. */
  queue: Uint8Array[];
  queued: number;
  /** Posted and not acknowledged. */
  inMain: number;
  paused: boolean;
  ended: boolean;
  blobBytes: number;
  diffID?: string;
  input: Readable;
  output: Readable;
}

/** The blobs being read, by id. */
const jobs = new Map<number, Job>();
/**
 * Frees what this thread dropped each 2 MiB inflated (young-gc.ts): the blob's read chunks and
 * the chunks copied before their transfer (a transferred one leaves nothing behind here). More
 * often than elsewhere: nothing this thread keeps can be promoted with its memory (the chunks it
 * queues are transferred), and its heap is small, so a collection costs next to nothing.
 */
const collect = collectEvery(2 * 1024 * 1024);

/** A chunk that owns its whole ArrayBuffer, which can be transferred (the original, or a copy). */
function owned(chunk: Buffer): Uint8Array {
  if (chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength && !(chunk.buffer instanceof SharedArrayBuffer)) return chunk;
  return new Uint8Array(chunk);
}

/** Posts queued chunks while the main thread has room for them; then the end, once all are posted. */
function pump(current: Job): void {
  while (current.queue.length > 0 && current.inMain < IN_MAIN) {
    const chunk = current.queue.shift()!;
    current.queued -= chunk.length;
    current.inMain += chunk.length;
    parentPort!.postMessage({ id: current.id, chunk, blobBytes: current.blobBytes }, [chunk.buffer as ArrayBuffer]);
  }
  if (current.paused && current.queued <= MAX_AHEAD / 2) {
    current.paused = false;
    current.output.resume();
  }
  if (current.ended && current.queue.length === 0 && current.diffID !== undefined) {
    jobs.delete(current.id);
    parentPort!.postMessage({ id: current.id, end: true, blobBytes: current.blobBytes, diffID: current.diffID });
    current.diffID = undefined;
  }
}

/** A blob to read: `follow` (its declared size) when it is still being downloaded (follow-file.ts). */
interface StartMessage {
  id: number;
  path: string;
  gzip: boolean;
  follow?: { size: number };
}

function start({ id, path, gzip, follow }: StartMessage): void {
  const input: Readable = follow ? followFile(path, follow.size) : createReadStream(path, { highWaterMark: 256 * 1024 });
  const hash = createHash('sha256');
  const output: Readable = gzip ? input.pipe(createGunzip({ chunkSize: 256 * 1024 })) : input;
  const current: Job = { id, queue: [], queued: 0, inMain: 0, paused: false, ended: false, blobBytes: 0, input, output };
  jobs.set(id, current);
  input.on('data', (chunk) => {
    current.blobBytes += chunk.length;
  });
  const failed = (error: Error) => {
    if (jobs.get(id) !== current) return;
    stop(current);
    parentPort!.postMessage({ id, error: { message: error.message, code: (error as NodeJS.ErrnoException).code } });
  };
  input.on('error', failed);
  output.on('error', failed);
  output.on('data', (chunk: Buffer) => {
    if (jobs.get(id) !== current) return;
    hash.update(chunk);
    const own = owned(chunk);
    current.queue.push(own);
    current.queued += own.length;
    collect(chunk.length);
    if (current.queued > MAX_AHEAD && !current.paused) {
      current.paused = true;
      output.pause();
    }
    pump(current);
  });
  output.on('end', () => {
    if (jobs.get(id) !== current) return;
    current.ended = true;
    current.diffID = `sha256:${hash.digest('hex')}`;
    pump(current);
  });
}

/** Ends a blob's streams and forgets it: nothing more is posted for it. */
function stop(current: Job): void {
  jobs.delete(current.id);
  current.queue = [];
  current.input.destroy();
  if (current.output !== current.input) current.output.destroy();
}

parentPort!.on('message', (msg: { start?: StartMessage; id?: number; ack?: number; abort?: boolean; commit?: boolean }) => {
  if (msg.start) {
    start(msg.start);
    return;
  }
  const current = msg.id === undefined ? undefined : jobs.get(msg.id);
  if (!current) return;
  if (msg.abort) {
    stop(current);
    return;
  }
  if (msg.commit) {
    (current.input as FollowedFile).commit?.();
    return;
  }
  if (msg.ack === undefined) return;
  current.inMain -= msg.ack;
  pump(current);
});
