/**
 * Downloading one blob into the store, resumably and never trusting a byte
 * before it is verified:
 *
 *   ingest/<hex>   the partial download, kept across runs; a per-digest lock
 *                  makes sure only one process appends to it
 *   → hashed while streaming (on resume, the bytes already there are hashed
 *     first), size and digest checked, fsynced, renamed into blobs/, and
 *     blobs/ fsynced (Store.commitIngest). A write the disk refuses (full,
 *     read-only) is ERR_STORE_IO naming the file, not retried, and the partial
 *     file is removed. While the body arrives, a datasync every
 *     WRITE_BACK_BYTES starts the disk on what is written so far (on the
 *     thread pool, at most MAX_WRITE_BACKS at once), so the fsync before the
 *     commit has only the tail left; it is a head start, not the durability
 *     point, which stays commitIngest's fsync. A failed one is ERR_STORE_IO
 *     like a failed write (a later fsync on another descriptor might not
 *     report the error again).
 *
 * A connection that drops mid-body is resumed with `Range: bytes=N-`; a
 * registry that ignores Range (200) restarts the file. When resumed content
 * fails verification the partial is thrown away and the blob downloaded once
 * more from zero; a fresh download that fails verification is
 * ERR_DIGEST_MISMATCH, and nothing is stored under the digest.
 *
 * A registry is also kept from wasting time and disk: a declared size above
 * the maximum blob size is refused before a request is made
 * (ERR_LAYER_TOO_LARGE), so is a blob the store's file system has no room for
 * (ERR_STORE_IO), and a transfer below the client's minimum rate counts as a
 * stall even when bytes arrived (a trickle would otherwise reset the count
 * for ever), ending in ERR_REGISTRY_UNAVAILABLE.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, writeSync } from 'node:fs';
import { mkdir, open, rm, stat, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import { digestHex } from '@conveyor/lib-common/digest';
import { garbageCollectorEvery } from '@conveyor/lib-common/memory';
import { ConveyorError, storeIoError } from '@conveyor/lib-common/errors';
import { acquireLock } from '@conveyor/lib-common/lock';
import type { Descriptor } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import type { RegistryClient, RepositoryRef } from './client.js';
import type { RawResponse } from './raw-exchange.js';
import { backoffDelay, isRetryableNetworkError, retry, type Attempt } from './retry.js';
import { isRawResponse, type HttpResponse } from './transport.js';

export interface BlobFetchOptions {
  signal?: AbortSignal;
  /** Bytes in the store so far (resumed bytes included) and the total. */
  onProgress?: (current: number, total: number) => void;
  /** Called when another process holds this blob's lock. */
  onWait?: () => void;
  /** Called when the blob's partial file (the store's ingest/<hex>) is open and a body starts into it (each attempt). */
  onReceiving?: () => void;
  /** Called before each retry with a human message. */
  onRetry?: (message: string) => void;
  /** Attempts that fail without making progress (or too slowly) before giving up (default 5). */
  maxStalls?: number;
  /** Largest declared blob size accepted (default DEFAULT_MAX_BLOB_SIZE). */
  maxSize?: number;
  /** Bytes free for the store's files under a directory; default statfs. Tests inject a reading. */
  freeSpace?: FreeSpace;
}

/** Bytes an unprivileged writer may still use on the file system holding `dir`; undefined when unknown. */
export type FreeSpace = (dir: string) => Promise<number | undefined>;

/**
 * 16 GiB. Docker and containerd set no limit; the largest layers of real
 * images (CUDA, ML runtimes) are a few GiB compressed, and a manifest that
 * declares a terabyte is an attack on the disk and the clock.
 */
export const DEFAULT_MAX_BLOB_SIZE = 16 * 1024 ** 3;

/** Refuses a blob whose declared size is above `max`, before anything is requested. */
export function checkBlobSize(desc: Descriptor, max: number, where: string): void {
  if (desc.size <= max) return;
  throw new ConveyorError('ERR_LAYER_TOO_LARGE', `blob ${desc.digest} from ${where} is declared as ${desc.size} bytes, more than the ${max} accepted`, {
    hint: 'raise the limit with --max-blob-size (or CONVEYOR_MAX_BLOB_SIZE) if the image is trusted',
    details: { digest: desc.digest, size: desc.size, max },
  });
}

/** statfs's available blocks (bavail: what is left after the root reserve). */
export const statfsFreeSpace: FreeSpace = async (dir) => {
  try {
    const fs = await statfs(dir);
    return fs.bavail * fs.bsize;
  } catch {
    // A file system that cannot say: the write itself will tell (ERR_STORE_IO).
    return undefined;
  }
};

/** Fails with ERR_STORE_IO, before downloading, when `needed` bytes do not fit under `dir`. */
export async function ensureFreeSpace(dir: string, needed: number, what: string, freeSpace: FreeSpace = statfsFreeSpace): Promise<void> {
  if (needed <= 0) return;
  const free = await freeSpace(dir);
  if (free === undefined || free >= needed) return;
  // Worded as the write would fail (ENOSPC), before anything was written.
  throw new ConveyorError('ERR_STORE_IO', `no space left on device (ENOSPC) for ${what}: ${needed} bytes needed, ${free} free under ${dir}`, {
    hint: `free ${needed - free} bytes or more on the file system of ${dir} (img-prune removes unused images), or use another store with --root`,
    details: { path: dir, needed, free, errno: 'ENOSPC' },
  });
}

export interface BlobFetchResult {
  /** `present`: already in the store (or a peer process fetched it meanwhile). */
  status: 'present' | 'downloaded';
  /** Bytes that came from an earlier partial download. */
  resumedBytes: number;
  /** Downloads started for this blob (openBlob calls; each retries 429/5xx/resets inside, uncounted here). */
  requests: number;
}

const WRITE_BATCH = 1024 * 1024;
/** Bytes written between two early datasyncs (see the header): a few, so a blob's last one leaves little behind. */
export const WRITE_BACK_BYTES = 4 * 1024 * 1024;
/**
 * Early datasyncs started and not yet seen to end, per blob. A completion is
 * seen only between libuv's read bursts (up to 32 full reads of the 1 MiB
 * buffer), so a smaller cap starts only that many per 32 MiB; this one keeps
 * a 30 MB layer at one per WRITE_BACK_BYTES, and a larger one from filling
 * the thread pool with more.
 */
export const MAX_WRITE_BACKS = 8;
const MAX_ATTEMPTS = 50;
const MAX_IN_FLIGHT = 8 * 1024 * 1024;

export async function fetchBlobToStore(
  client: RegistryClient,
  store: Store,
  ref: RepositoryRef,
  desc: Descriptor,
  options: BlobFetchOptions = {},
): Promise<BlobFetchResult> {
  const { digest, size } = desc;
  if (await store.hasBlob(digest, size)) return { status: 'present', resumedBytes: 0, requests: 0 };
  checkBlobSize(desc, options.maxSize ?? DEFAULT_MAX_BLOB_SIZE, `${ref.registry}/${ref.repository}`);
  await mkdir(store.ingestDir, { recursive: true });
  const lock = await acquireLock(store.lockPath(`ingest-${digestHex(digest)}`), { onWait: options.onWait });
  try {
    if (await store.hasBlob(digest, size)) return { status: 'present', resumedBytes: 0, requests: 0 };
    return await download(client, store, ref, desc, options);
  } finally {
    await lock.release();
  }
}

async function download(client: RegistryClient, store: Store, ref: RepositoryRef, desc: Descriptor, options: BlobFetchOptions): Promise<BlobFetchResult> {
  const { digest, size } = desc;
  const partial = store.ingestPath(digest);
  const maxStalls = options.maxStalls ?? 5;
  let stalls = 0;
  let requests = 0;
  let resumedBytes = -1;
  let restartedClean = false;
  await ensureFreeSpace(store.ingestDir, size - Math.min(size, await fileSize(partial)), `blob ${digest}`, options.freeSpace);
  // Each round resumes from what the partial file holds; it goes again after a
  // stall (counted, with backoff), at once after a refused range or a resumed
  // file that does not verify.
  return retry<BlobFetchResult>(
    async (n) => {
      // Progress resets the stall count; this caps a registry that trickles a byte per connection.
      if (n >= MAX_ATTEMPTS) throw new ConveyorError('ERR_REGISTRY_UNAVAILABLE', `blob ${digest} from ${ref.registry}: gave up after ${MAX_ATTEMPTS} attempts`);
      let offset = await fileSize(partial);
      if (offset > size) {
        await rm(partial, { force: true });
        offset = 0;
      }
      if (resumedBytes < 0) resumedBytes = offset;
      const resumedThisAttempt = offset > 0;
      let hash = createHash('sha256');
      if (offset > 0) await hashFile(partial, hash, offset);
      let written = offset;
      if (offset < size) {
        let res: HttpResponse;
        try {
          requests++;
          res = await client.openBlob(ref, digest, offset, options.signal);
        } catch (error) {
          // Too slow was retried by the request already; another round here would square the wait.
          if (
            error instanceof ConveyorError &&
            error.code === 'ERR_REGISTRY_UNAVAILABLE' &&
            isRetryableNetworkError(error.cause) &&
            !isSlow(error.cause) &&
            ++stalls < maxStalls
          ) {
            return again(client, stalls, `${digest.slice(0, 19)}: ${error.message}`);
          }
          throw error;
        }
        if (res.statusCode === 416) {
          // The registry does not like our range: start over.
          await rm(partial, { force: true });
          if (++stalls >= maxStalls) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `blob ${digest}: the registry refuses ranges and full downloads`);
          return { again: true };
        }
        if (res.statusCode === 206) {
          const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
          if (!range || Number(range[1]) !== offset) {
            res.destroy();
            await rm(partial, { force: true });
            if (++stalls >= maxStalls) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `blob ${digest}: the registry answers ranges wrongly`);
            return { again: true };
          }
        } else if (offset > 0) {
          // 200: the registry ignored Range and sends the whole blob; start the file over.
          offset = 0;
          written = 0;
          hash = createHash('sha256');
        }
        const before = written;
        try {
          written = await receive({ res, path: partial, append: offset > 0, hash, written, size, digest, options });
        } catch (error) {
          if (error instanceof ConveyorError) {
            await rm(partial, { force: true });
            throw error;
          }
          if (options.signal?.aborted) throw error;
          // A failure after progress (the partial grew) does not count: resume
          // from there. Too slow always counts, bytes or not.
          const now = await fileSize(partial);
          if (now > before && !isSlow(error)) stalls = 0;
          else if (++stalls >= maxStalls) {
            throw new ConveyorError('ERR_REGISTRY_UNAVAILABLE', `blob ${digest} from ${ref.registry}: ${(error as Error).message}`, {
              cause: error,
              ...(isSlow(error)
                ? {
                    hint: `${ref.registry} stayed below the minimum rate ${maxStalls} times; on a slow link lower --min-rate (0 turns the check off) or widen --rate-window`,
                  }
                : {}),
            });
          }
          return again(
            client,
            Math.max(stalls, 1),
            `${digest.slice(0, 19)}: connection lost at ${now} of ${size} bytes (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); resuming`,
          );
        }
        if (written < size) {
          // The server ended the body early without an error.
          if (++stalls >= maxStalls) throw new ConveyorError('ERR_SIZE_MISMATCH', `blob ${digest}: the registry sent ${written} of ${size} bytes`);
          return again(client, stalls, `${digest.slice(0, 19)}: body ended at ${written} of ${size} bytes; resuming`);
        }
      }
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== digest) {
        await rm(partial, { force: true });
        if (resumedThisAttempt && !restartedClean) {
          restartedClean = true;
          return { again: true, message: `${digest.slice(0, 19)}: resumed download does not verify; downloading again from the start` };
        }
        throw new ConveyorError('ERR_DIGEST_MISMATCH', `blob ${digest} from ${ref.registry}/${ref.repository}: the content has digest ${actual}`, {
          hint: 'the registry is broken or lying; nothing was stored',
          details: { digest, actual },
        });
      }
      if (size === 0) await writeFile(partial, '').catch((error) => Promise.reject(store.ioError(error, partial)));
      // fsync, rename into blobs/, fsync blobs/ (durable.ts): the commit point.
      await store.commitIngest(digest, partial);
      return { done: { status: 'downloaded', resumedBytes, requests } };
    },
    { signal: options.signal, onRetry: options.onRetry },
  );
}

function isSlow(error: unknown): boolean {
  return (error as NodeJS.ErrnoException)?.code === 'ERR_CONVEYOR_SLOW';
}

/** Another round after the `stalls`-th stall, after the client's backoff. */
function again(client: RegistryClient, stalls: number, message: string): Attempt<never> {
  const wait = backoffDelay(client.retryPolicy, stalls - 1);
  return { again: true, wait, message: `${message} (in ${wait} ms)` };
}

/** One response body on its way into the partial file. */
interface Receiving {
  res: HttpResponse;
  /** The partial file. */
  path: string;
  /** Resume: add to the file rather than start it over. */
  append: boolean;
  /** Fed every body byte (on resume, already fed the file's bytes). */
  hash: Hash;
  /** Bytes in the file before this body. */
  written: number;
  /** The blob's declared size and digest. */
  size: number;
  digest: string;
  options: BlobFetchOptions;
}

/** Streams the body into the partial file, hashing as it goes. Returns the bytes now in the file. */
async function receive(job: Receiving): Promise<number> {
  const { res, path, hash, size, digest, options } = job;
  let { written } = job;
  let handle: FileHandle | undefined;
  try {
    try {
      handle = await open(path, job.append ? 'a' : 'w', 0o644);
    } catch (error) {
      // Nobody will read the body: let its connection go now, not at the idle timeout.
      res.destroy();
      throw error;
    }
    options.onReceiving?.();
    if (isRawResponse(res)) return await receiveRaw(res, handle, job);
    const file = handle;
    // Writes are chained behind the reads (up to MAX_IN_FLIGHT bytes), so the
    // socket keeps flowing while the disk catches up.
    let received = written;
    let inFlight = 0;
    let writing: Promise<void> = Promise.resolve();
    let writeError: unknown;
    let batch: Buffer[] = [];
    let batchBytes = 0;
    const writeBack = new WriteBack(file);
    const flush = () => {
      if (batchBytes === 0) return;
      const chunks = batch;
      const bytes = batchBytes;
      batch = [];
      batchBytes = 0;
      inFlight += bytes;
      writing = writing.then(async () => {
        await writeAll(file, chunks, bytes);
        writeBack.wrote(bytes);
        written += bytes;
        inFlight -= bytes;
        options.onProgress?.(written, size);
      });
      writing.catch((error) => {
        // A full or failing disk is not a dropped connection: no retry, and not the registry's fault.
        writeError ??= storeIoError(error, { path, doing: 'cannot write' });
      });
    };
    let readError: unknown;
    const collect = garbageCollectorEvery(1 << 20);
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        collect(chunk.length);
        if (writeError) throw writeError;
        if (received + chunk.length > size) {
          res.destroy();
          throw tooLong(digest, size);
        }
        received += chunk.length;
        hash.update(chunk);
        batch.push(chunk);
        batchBytes += chunk.length;
        if (batchBytes >= WRITE_BATCH) {
          flush();
          if (inFlight >= MAX_IN_FLIGHT) await writing;
        }
      }
    } catch (error) {
      readError = error;
    }
    // Whatever arrived before a failure is kept for the resume.
    flush();
    try {
      await writing;
    } catch {
      // writeError holds it, as ERR_STORE_IO.
    }
    try {
      await writeBack.settle(path);
    } catch (error) {
      writeError ??= error;
    }
    // A failed write wins over whatever the socket did meanwhile: a full disk
    // is not a dropped connection to resume (nor the registry's fault).
    if (writeError !== undefined) throw writeError;
    if (readError !== undefined) throw readError;
    return written;
  } finally {
    await handle?.close();
  }
}

function tooLong(digest: string, size: number): ConveyorError {
  return new ConveyorError('ERR_SIZE_MISMATCH', `blob ${digest}: the registry sent more than the ${size} bytes the manifest says`, {
    hint: 'the registry is broken or lying; nothing was stored',
  });
}

/**
 * A raw-socket body (raw-exchange.ts): each piece is a view of the socket's
 * one reused buffer, so it is hashed and written before the sink returns,
 * with a synchronous write: it lands in the page cache in microseconds, and
 * an asynchronous one would need a copy (the fresh memory this path avoids)
 * or a paused socket. Returns the bytes now in the file.
 */
async function receiveRaw(res: RawResponse, file: FileHandle, job: Receiving): Promise<number> {
  const { path, hash, size, digest, options } = job;
  let { written } = job;
  let unreported = 0;
  const writeBack = new WriteBack(file);
  try {
    await res.consume((view) => {
      if (written + view.length > size) throw tooLong(digest, size);
      hash.update(view);
      for (let at = 0; at < view.length; ) {
        try {
          at += writeSync(file.fd, view, at, view.length - at);
        } catch (error) {
          // A full or failing disk is not a dropped connection: no retry, and not the registry's fault.
          throw storeIoError(error, { path, doing: 'cannot write' });
        }
      }
      written += view.length;
      writeBack.wrote(view.length);
      unreported += view.length;
      if (unreported >= WRITE_BATCH) {
        unreported = 0;
        options.onProgress?.(written, size);
      }
    });
  } finally {
    if (unreported > 0) options.onProgress?.(written, size);
    // Before the file is closed: a datasync still running holds it.
    await writeBack.settle(path);
  }
  return written;
}

/**
 * Early datasyncs of a file being written (see the header): `wrote` counts
 * bytes and starts one every WRITE_BACK_BYTES, without waiting for the one
 * before (up to MAX_WRITE_BACKS: a loop busy with the socket sees a
 * completion late, so one at a time started only one or two per 30 MB blob);
 * `settle` waits for all of them and throws the first failure as ERR_STORE_IO.
 */
export class WriteBack {
  private pending = 0;
  private running = 0;
  private all: Promise<void> = Promise.resolve();
  private failure: unknown;

  constructor(private readonly file: FileHandle) {}

  wrote(bytes: number): void {
    this.pending += bytes;
    if (this.pending < WRITE_BACK_BYTES || this.running >= MAX_WRITE_BACKS) return;
    this.pending = 0;
    this.running++;
    const sync = this.file.datasync().then(
      () => {
        this.running--;
      },
      (error) => {
        this.running--;
        this.failure ??= error;
      },
    );
    this.all = Promise.all([this.all, sync]).then(() => undefined);
  }

  async settle(path: string): Promise<void> {
    // Again while one started meanwhile (a write after settle was called).
    for (let all = this.all; ; all = this.all) {
      await all;
      if (all === this.all) break;
    }
    if (this.failure !== undefined) throw storeIoError(this.failure, { path, doing: 'cannot write' });
  }
}

/** writev without copying the chunks together; loops on short writes. */
async function writeAll(handle: FileHandle, chunks: Buffer[], bytes: number): Promise<void> {
  let pending = chunks;
  let left = bytes;
  while (left > 0) {
    const { bytesWritten } = await handle.writev(pending);
    left -= bytesWritten;
    if (left === 0) break;
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const chunk of pending) {
      if (skip >= chunk.length) {
        skip -= chunk.length;
        continue;
      }
      rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
      skip = 0;
    }
    pending = rest;
  }
}

async function hashFile(path: string, hash: Hash, length: number): Promise<void> {
  if (length === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1 }) as AsyncIterable<Buffer>) hash.update(chunk);
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}
