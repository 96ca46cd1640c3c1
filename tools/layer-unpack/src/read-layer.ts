/**
 * Reads one layer: blob → decompress → tar entries into an Applier. gzip and
 * plain tar are read, inflated and hashed on the inflate thread
 * (inflate-worker.ts; a thread that finished a blob is kept for the next
 * layer, and two layers at once share one), but for a small blob (up to
 * INLINE_BLOB_BYTES), which is read and inflated here: a thread costs more to
 * start than such a blob to inflate.
 * zstd is inflated by the `zstd` program and hashed here. The uncompressed
 * stream feeds tar-stream (tarparser.ts) and each entry is applied as it
 * arrives. No temporary copy of the layer is made. A blob still downloading
 * (LayerSource.growing: img-fetch's ingest file) is read as it grows by the
 * inflate thread (follow-file.ts), which is told when the blob is committed.
 *
 * The diff ID is checked when the stream ends, before this layer's batch
 * steps (mknod, setfattr) run; on a mismatch the layer fails with
 * ERR_DIGEST_MISMATCH and the caller removes its staging directory. Bytes
 * after the tar's end-of-archive marker are hashed (they are part of the
 * diff ID) but never parsed (tarparser.ts).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ConveyorError, isConveyorError } from '@conveyor/lib-common/errors';
import type { Compression } from '@conveyor/lib-common/mediatypes';
import type { Applier } from './apply/applier.js';
import { invalid } from './errors.js';
import { createExtract, type TarEntryHeader } from './tarparser.js';
import { collectEvery, keepYoungGenerationSmall, THREAD_LIMITS } from './young-gc.js';

export interface LayerSource {
  /** Path of the (compressed) blob or tarball. */
  path: string;
  /** From the media type; undefined = detect from magic bytes. */
  compression?: Compression;
  /** Expected sha256 of the uncompressed tar, when known. */
  diffID?: string;
  /** Name for messages (the digest or the file name). */
  label: string;
  /**
   * The blob is still being downloaded to `path` (img-fetch's ingest file): read as it grows, up to
   * `size` bytes (follow-file.ts). `committed` resolves once the blob is in the store (no byte more
   * will come), rejects when it never will be; the read then fails with that error.
   */
  growing?: { size: number; committed: Promise<void> };
}

export interface LayerResult {
  /** sha256 of the uncompressed tar as read. */
  diffID: string;
  /** Uncompressed bytes read. */
  tarBytes: number;
  /** Compressed bytes read. */
  blobBytes: number;
  /** Most bytes received from the inflate thread and not yet parsed at once (tested); absent when not inflated on a thread. */
  peakBufferedBytes?: number;
}

/** Sniffs gzip (1f 8b) and zstd (28 b5 2f fd) magic; anything else is taken as a plain tar. */
export async function detectCompression(path: string): Promise<Compression> {
  const handle = await open(path, 'r');
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(4), 0, 4, 0);
    if (bytesRead >= 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) return 'gzip';
    if (bytesRead >= 4 && buffer.readUInt32BE(0) === 0x28b52ffd) return 'zstd';
    return 'none';
  } finally {
    await handle.close();
  }
}

function toLayerError(error: unknown, label: string): ConveyorError {
  if (isConveyorError(error)) return error;
  const err = error as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && err.syscall) {
    if (err.code === 'ENAMETOOLONG') return invalid(`layer ${label}: ${err.message}`);
    return new ConveyorError('ERR_STORE_IO', `layer ${label}: ${err.message}`, { cause: error });
  }
  // zlib and tar-stream errors: a corrupt, truncated or malformed archive.
  return new ConveyorError('ERR_LAYER_INVALID', `layer ${label} is not a valid tar archive: ${err?.message ?? String(error)}`, { cause: error });
}

interface Decompressor {
  stream: Readable;
  /** A growing blob's read (inflate thread): the blob is complete in the store. */
  commit?(): void;
  /** Resolves when the decompressor process (zstd) exited cleanly; at once for the inflate thread. */
  done: Promise<void>;
  kill(): void;
  /** The uncompressed stream's digest, when the decompressor computes it (the inflate thread). */
  diffID?: Promise<string>;
  /** Most bytes waiting in `stream` at once (the inflate thread). */
  peakBuffered?: () => number;
}

/**
 * gzip and plain tar: read, inflate and hash on the inflate thread
 * (inflate-worker.ts); chunks arrive here, transferred, as a Readable. The
 * thread is told what was consumed (read() calls): it posts only so far ahead
 * of that (IN_MAIN), and keeps what it inflated further ahead in its own queue.
 */
function inflateOnThread(
  path: string,
  gzip: boolean,
  Worker: typeof import('node:worker_threads').Worker,
  onBlobBytes: (n: number) => void,
  follow?: { size: number },
): Decompressor {
  const thread = takeInflater(Worker);
  const worker = thread.worker;
  const id = nextInflateJob++;
  let consumed = 0;
  let resolveDigest!: (d: string) => void;
  let rejectDigest!: (e: Error) => void;
  const diffID = new Promise<string>((resolve, reject) => {
    resolveDigest = resolve;
    rejectDigest = reject;
  });
  diffID.catch(() => undefined);
  let ended = false;
  let peakBuffered = 0;
  const stream = new Readable({
    // Small: what waits here unparsed should die young (see collectReceived).
    highWaterMark: 256 * 1024,
    read() {
      if (consumed > 0 && !ended) {
        worker.postMessage({ id, ack: consumed });
        consumed = 0;
      }
    },
  });
  /** Failed or abandoned: the thread stops reading this blob; alone in it, the thread is not reused. */
  const end = (aborted: boolean) => {
    if (!thread.jobs.delete(id)) return;
    if (thread.jobs.size === 0) dropInflater(thread);
    else if (aborted) worker.postMessage({ id, abort: true });
  };
  thread.jobs.set(id, {
    message: (msg) => {
      if (msg.error) {
        const error = Object.assign(new Error(msg.error.message), { code: msg.error.code });
        rejectDigest(error);
        stream.destroy(error);
        // The thread has ended this blob's streams already.
        end(false);
        return;
      }
      if (msg.blobBytes !== undefined) onBlobBytes(msg.blobBytes);
      if (msg.chunk) {
        const chunk = Buffer.from(msg.chunk.buffer, msg.chunk.byteOffset, msg.chunk.byteLength);
        consumed += chunk.length;
        collectReceived(chunk.length);
        stream.push(chunk);
        peakBuffered = Math.max(peakBuffered, stream.readableLength);
      }
      if (msg.end) {
        ended = true;
        resolveDigest(msg.diffID!);
        stream.push(null);
        // Done cleanly: kept for the next blob (unref'd when idle: it never keeps the process alive).
        thread.jobs.delete(id);
        if (thread.jobs.size === 0) {
          worker.unref();
          if (idleInflaterCount() > MAX_IDLE_INFLATERS) dropInflater(thread);
        }
      }
    },
    error: (error) => {
      rejectDigest(error);
      stream.destroy(error);
    },
  });
  worker.ref();
  worker.postMessage({ start: { id, path, gzip, follow } });
  return {
    stream,
    commit: () => {
      if (!ended) worker.postMessage({ id, commit: true });
    },
    done: Promise.resolve(),
    diffID,
    peakBuffered: () => peakBuffered,
    kill: () => {
      if (!ended) end(true);
      stream.destroy();
    },
  };
}

interface InflateMessage {
  id?: number;
  chunk?: Uint8Array;
  blobBytes?: number;
  end?: boolean;
  diffID?: string;
  error?: { message: string; code?: string };
}

/** An inflate thread; `jobs` routes its messages to the blobs it reads, by id (none while idle). */
interface Inflater {
  worker: import('node:worker_threads').Worker;
  jobs: Map<number, { message(msg: InflateMessage): void; error(error: Error): void }>;
}

/**
 * Chunks arrive transferred (inflate-worker.ts); the dropped ones are freed each few MiB
 * (young-gc.ts). One count for every layer read at once: each chunk should see at most one
 * collection while the parser holds it, or it is promoted and freed only by a full collection.
 */
const collectReceived = collectEvery();

/** Inflate threads kept between layers: a thread costs ~40 ms of CPU to start. */
const MAX_IDLE_INFLATERS = 2;
/**
 * Blobs read by one thread at once: layers unpacked at once (--jobs 2) share one (issue 17: a
 * thread costs ~10 MB of RSS); its inflating runs on libuv's pool, its hashing here, and two
 * streams keep it far from busy.
 */
const MAX_JOBS_PER_INFLATER = 2;
/** Every inflate thread alive, reading or idle. */
const inflaters: Inflater[] = [];
let nextInflateJob = 1;

/** Inflate threads idle between layers (tested). */
export function idleInflaterCount(): number {
  return inflaters.filter((t) => t.jobs.size === 0).length;
}

/** Inflate threads alive (reading or idle) and those reading a blob now (tested: layers unpacked at once share one). */
export function inflaterCounts(): { alive: number; reading: number } {
  return { alive: inflaters.length, reading: inflaters.filter((t) => t.jobs.size > 0).length };
}

/** The thread for a new blob: the busiest one with room (so layers at once share it), else a new one. */
function takeInflater(Worker: typeof import('node:worker_threads').Worker): Inflater {
  let best: Inflater | undefined;
  for (const t of inflaters) if (t.jobs.size < MAX_JOBS_PER_INFLATER && (!best || t.jobs.size > best.jobs.size)) best = t;
  return best ?? newInflater(Worker);
}

/** Ends a thread (failed, or one idle too many); any blob still routed to it fails. */
function dropInflater(thread: Inflater): void {
  const i = inflaters.indexOf(thread);
  if (i >= 0) inflaters.splice(i, 1);
  void thread.worker.terminate();
}

function newInflater(Worker: typeof import('node:worker_threads').Worker): Inflater {
  const worker = new Worker(new URL('./inflate-worker.js', import.meta.url), { resourceLimits: THREAD_LIMITS });
  const thread: Inflater = { worker, jobs: new Map() };
  inflaters.push(thread);
  worker.on('message', (msg: InflateMessage) => (msg.id === undefined ? undefined : thread.jobs.get(msg.id)?.message(msg)));
  worker.on('error', (error) => {
    for (const job of [...thread.jobs.values()]) job.error(error);
  });
  worker.on('exit', (code) => {
    const i = inflaters.indexOf(thread);
    if (i >= 0) inflaters.splice(i, 1);
    // Ended under a blob it was reading (not by us: we end only threads with none): that blob fails.
    for (const job of [...thread.jobs.values()]) job.error(new Error(`inflate thread exited (${code}) while reading`));
    thread.jobs.clear();
  });
  return thread;
}

/** Blobs up to this size are inflated on the calling thread (see the top of this file). */
const INLINE_BLOB_BYTES = 1024 * 1024;

/**
 * Whether a blob can be read while it downloads (LayerSource.growing): gzip and plain tar on the
 * inflate thread. A small blob is not worth it (it is in soon after it starts), nor is zstd (its
 * program would need the follower as its input).
 */
export function canReadGrowing(compression: Compression | undefined, size: number): boolean {
  return (compression === 'gzip' || compression === 'none') && size > INLINE_BLOB_BYTES;
}

/** gzip and plain tar, small blobs: read and inflated on this thread; the caller hashes. */
function inflateHere(path: string, gzip: boolean, zlib: typeof import('node:zlib'), onBlobBytes: (n: number) => void): Decompressor {
  const input = createReadStream(path, { highWaterMark: 256 * 1024 });
  let blobBytes = 0;
  input.on('data', (chunk) => {
    blobBytes += chunk.length;
    onBlobBytes(blobBytes);
  });
  const stream = gzip ? input.pipe(zlib.createGunzip({ chunkSize: 256 * 1024 })) : input;
  // pipe() does not pass a read error on: end the inflated stream with it.
  if (stream !== input) input.on('error', (error) => stream.destroy(error));
  return {
    stream,
    done: Promise.resolve(),
    kill: () => {
      input.destroy();
      stream.destroy();
    },
  };
}

interface Modules {
  subprocess?: typeof import('@conveyor/lib-common/subprocess');
  workerThreads?: typeof import('node:worker_threads');
  zlib?: typeof import('node:zlib');
}

/** Loads what the decompressor needs up front, so no data flows before every listener is attached. */
async function loadModules(compression: Compression, inline: boolean): Promise<Modules> {
  if (compression === 'zstd') return { subprocess: await import('@conveyor/lib-common/subprocess') };
  if (inline) return { zlib: await import('node:zlib') };
  return { workerThreads: await import('node:worker_threads') };
}

/**
 * zstd: `zstd -dc` started with lib-common's startProcess, `source` piped
 * into it and its stdout streamed to the parser (not collected: buffer off),
 * so its stderr is collected here; the result maps to our errors.
 */
function inflateZstd(source: Readable, label: string, { startProcess }: typeof import('@conveyor/lib-common/subprocess')): Decompressor {
  const child = startProcess('zstd', ['-dc', '-q'], { stdin: 'pipe', buffer: false });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => {
    if (stderr.length < 2000) stderr += d;
  });
  source.pipe(child.stdin!);
  const done = child.result.then((result) => {
    if (result.code === 'ENOENT') {
      throw new ConveyorError('ERR_LAYER_COMPRESSION', `layer ${label} is zstd-compressed and the zstd program is not installed`, {
        hint: 'install zstd (Debian: apt-get install zstd)',
      });
    }
    if (result.code !== undefined) throw new ConveyorError('ERR_LAYER_COMPRESSION', `cannot run zstd for layer ${label}: ${result.originalMessage}`);
    if (result.failed) throw new ConveyorError('ERR_LAYER_INVALID', `layer ${label}: zstd failed: ${stderr.trim() || `exit ${result.exitCode ?? null}`}`);
  });
  done.catch(() => undefined);
  return {
    stream: child.stdout!,
    done,
    kill: () => {
      source.destroy();
      child.kill('SIGKILL');
    },
  };
}

/**
 * Streams one layer into `applier` (whose beginLayer the caller has called).
 * Verifies the diff ID when `source.diffID` is set, then runs the layer's
 * batch steps. Progress is reported in compressed bytes read.
 */
export async function applyLayer(source: LayerSource, applier: Applier, onProgress?: (blobBytes: number) => void): Promise<LayerResult> {
  const { growing } = source;
  if (growing && !canReadGrowing(source.compression, growing.size)) throw new Error(`layer ${source.label}: cannot be read while it downloads`);
  let blobSize: number;
  try {
    blobSize = growing ? growing.size : (await stat(source.path)).size;
  } catch {
    throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `layer ${source.label}: ${source.path} is missing`, { hint: 'pull the image again with img-fetch' });
  }
  const compression = source.compression ?? (await detectCompression(source.path));
  const inline = blobSize <= INLINE_BLOB_BYTES;
  // The tree of what a layer wrote would grow the main thread's young generation to ~34 MB (young-gc.ts).
  keepYoungGenerationSmall();
  const modules = await loadModules(compression, inline);
  const extract = await createExtract();
  applier.setFailureHandler((error) => fail(error));
  // From here on, everything is wired synchronously: no chunk can flow before its listener exists.
  let blobBytes = 0;
  let dec: Decompressor;
  let input: Readable;
  if (compression === 'zstd') {
    input = createReadStream(source.path, { highWaterMark: 256 * 1024 });
    dec = inflateZstd(input, source.label, modules.subprocess!);
    input.on('data', (chunk) => {
      blobBytes += chunk.length;
      onProgress?.(blobBytes);
    });
  } else {
    const onBlobBytes = (n: number) => {
      blobBytes = n;
      onProgress?.(n);
    };
    const gzip = compression === 'gzip';
    dec = inline
      ? inflateHere(source.path, gzip, modules.zlib!, onBlobBytes)
      : inflateOnThread(source.path, gzip, modules.workerThreads!.Worker, onBlobBytes, growing && { size: growing.size });
    input = dec.stream;
  }
  const hash = createHash('sha256');
  let tarBytes = 0;
  const maxTarBytes = applier.opts.maxBytes + 1024 * applier.opts.maxEntries + 1024 * 1024;

  let failure: ConveyorError | undefined;
  let rejectFailed: (error: unknown) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (rejectFailed = reject));
  failed.catch(() => undefined);
  const fail = (error: unknown) => {
    if (failure) return;
    failure = toLayerError(error, source.label);
    rejectFailed(failure);
    markDone();
    dec.kill();
    extract.destroy(failure);
  };
  growing?.committed.then(
    () => dec.commit?.(),
    (error) => fail(error),
  );

  // tar-stream may finish while the last entry's data is still being delivered: track it.
  let entryDone: Promise<void> = Promise.resolve();
  let markDone: () => void = () => undefined;
  extract.on('entry', (header, stream, nextEntry) => {
    // Destroying the extractor errors the current entry stream; the failure is reported once, by fail().
    stream.on('error', () => undefined);
    if (failure) return;
    entryDone = new Promise<void>((resolve) => (markDone = resolve));
    const next = () => {
      markDone();
      nextEntry();
    };
    applier.entry(header as unknown as TarEntryHeader).then(
      (sink) => {
        if (failure) return;
        if (sink === undefined) {
          stream.on('end', () => next());
          stream.resume();
          return;
        }
        let waiting = false;
        stream.on('data', (chunk: unknown) => {
          if (failure) return;
          sink.write(chunk as Uint8Array);
          // Bounded within a large file too: hold its data back while the writer has too much in
          // flight (a 1 GB file would otherwise be queued as fast as it inflates, whatever the disk).
          if (applier.busy && !waiting) {
            waiting = true;
            stream.pause();
            applier.room().then(() => {
              waiting = false;
              stream.resume();
            }, fail);
          }
        });
        stream.on('end', () => {
          if (failure) return;
          sink.end();
          // Bounded: when the writer thread has too much in flight, hold the parser back.
          if (applier.busy) applier.room().then(next, fail);
          else next();
        });
      },
      (error) => fail(error),
    );
  });

  const finished = new Promise<void>((resolve, reject) => {
    extract.on('finish', () => resolve());
    // A parser error must end the wait at once: the input is paused behind the dead parser and would never end.
    extract.on('error', (error) => {
      reject(error);
      fail(error);
    });
    extract.on('close', () => (failure ? reject(failure) : resolve()));
  });
  finished.catch(() => undefined);

  dec.stream.on('data', (chunk: Buffer) => {
    if (failure) return;
    tarBytes += chunk.length;
    if (tarBytes > maxTarBytes) {
      fail(
        new ConveyorError('ERR_LAYER_TOO_LARGE', `layer ${source.label} inflates past ${maxTarBytes} bytes`, {
          hint: 'raise --max-bytes if the image is really this large',
        }),
      );
      return;
    }
    if (!dec.diffID) hash.update(chunk);
    if (!extract.write(chunk)) dec.stream.pause();
  });
  extract.on('drain', () => dec.stream.resume());
  const streamEnded = new Promise<void>((resolve, reject) => {
    dec.stream.on('end', () => {
      if (!failure) extract.end(undefined);
      resolve();
    });
    dec.stream.on('error', (error) => {
      fail(error);
      reject(failure);
    });
    input.on('error', (error) => {
      fail(error);
      reject(failure);
    });
  });
  streamEnded.catch(() => undefined);

  try {
    // Any failure (a hostile entry, a parser error, a dead decompressor) ends the wait at once.
    await Promise.race([
      (async () => {
        await streamEnded;
        await dec.done;
        await finished;
        await entryDone;
      })(),
      failed,
    ]);
    if (failure) throw failure;
  } catch (error) {
    fail(error);
    throw failure;
  }

  const diffID = dec.diffID ? await dec.diffID : `sha256:${hash.digest('hex')}`;
  if (source.diffID !== undefined && diffID !== source.diffID) {
    throw new ConveyorError('ERR_DIGEST_MISMATCH', `layer ${source.label}: uncompressed content is ${diffID}, the image config says ${source.diffID}`, {
      hint: 'the blob in the store is not the layer the image names; remove it and pull again',
      details: { expected: source.diffID, actual: diffID },
    });
  }
  try {
    await applier.finishLayer();
  } catch (error) {
    throw toLayerError(error, source.label);
  }
  return { diffID, tarBytes, blobBytes, ...(dec.peakBuffered ? { peakBufferedBytes: dec.peakBuffered() } : {}) };
}
