/**
 * Leases: how a writer of the store (img-fetch, layer-unpack) keeps a
 * concurrent img-prune from deleting what it is about to reference.
 *
 * Between a blob landing in blobs/ and the index.json reference that names it,
 * nothing references the blob; a layer directory is unreferenced until its
 * image is tagged. A prune that marks from index.json alone would delete it,
 * and the pull would end with a reference to a missing blob. So the store has
 * a reader-writer pair made of lock.ts locks:
 *
 *   locks/gc.lock               the gc lock: held by a prune for its whole run
 *   leases/<16 hex>.lock/<owner token>   one per in-flight write operation
 *
 * - A writer creates its lease, then looks at the gc lock: when a prune holds
 *   it, the writer withdraws the lease, waits for the prune, and starts again.
 *   The lease lives until its operation has written its last reference.
 * - A prune takes the gc lock (no new lease can start), waits until no live
 *   lease is left, then marks and sweeps, then releases the gc lock.
 *
 * So a prune never runs while a write is in flight, and a write never starts
 * while a prune runs: a writer makes its lease (rename) before it reads the gc
 * lock, a prune takes the gc lock (rename) before it reads the leases, so if
 * the writer saw no prune, the prune sees the writer's lease. A lease is a lock.ts lock under a random name, so its
 * entry is the owner's token: a lease whose process died (kill -9) is
 * recognised as dead by its pid and start time and removed by the next prune.
 * A writer never holds a lease while it waits for input (a pipeline's
 * upstream tool may itself be waiting for the gc lock), only around work.
 *
 * Failure: acquireLease throws ERR_STORE_LOCKED when a prune holds the gc lock
 * longer than the timeout, or the filesystem's error; acquireGcLock throws
 * ERR_STORE_LOCKED when the gc lock or live leases outlast its timeout.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomHex } from './digest.js';
import { ConveyorError, isStorageErrno } from './errors.js';
import { acquireLock, type Lock, type LockOptions, tokenAlive } from './lock.js';
import { mkdirClosed, type Store } from './store.js';

/** The name of the gc lock under locks/. */
export const GC_LOCK = 'gc';

export function leasesDir(store: Store): string {
  return join(store.root, 'leases');
}

/**
 * Takes a lease on the store for one write operation; resolves once no prune
 * runs. Release it when the operation has written its references (or failed).
 *
 * The lease is made first and the gc lock looked at after, so writers never
 * wait for one another: a prune takes the gc lock first and reads the leases
 * after, so of a writer and a prune racing, at least one sees the other. A
 * writer that sees a prune withdraws its lease and waits for it.
 */
export async function acquireLease(store: Store, options: LockOptions = {}): Promise<Lock> {
  const deadline = Date.now() + (options.timeoutMs ?? 10 * 60_000);
  await store.tighten();
  // A writer's first write: a read-only or full store is reported here, naming the store.
  const refused = (error: unknown) => Promise.reject(isStorageErrno(error) ? store.ioError(error, leasesDir(store), 'cannot take a write lease in') : error);
  await mkdirClosed(leasesDir(store)).catch(refused);
  let waited = false;
  for (;;) {
    const lease = await acquireLock(join(leasesDir(store), randomHex(8)), { timeoutMs: 0 }).catch(refused);
    if (!(await gcRunning(store))) return lease;
    await lease.release();
    if (!waited) {
      waited = true;
      options.onWait?.();
    }
    // Waits while the prune holds the gc lock; then the lease is made again.
    const gc = await acquireLock(store.lockPath(GC_LOCK), { timeoutMs: Math.max(0, deadline - Date.now()) });
    await gc.release();
  }
}

/** Whether a live process holds the gc lock. */
async function gcRunning(store: Store): Promise<boolean> {
  const tokens = await readdir(store.lockPath(GC_LOCK)).catch(() => [] as string[]);
  return tokens.some((token) => tokenAlive(token));
}

/** Runs `fn` under a lease (see acquireLease). */
export async function withLease<T>(store: Store, fn: () => Promise<T>, options?: LockOptions): Promise<T> {
  const lease = await acquireLease(store, options);
  try {
    return await fn();
  } finally {
    await lease.release();
  }
}

/** A live lease: who holds it. */
export interface LeaseHolder {
  name: string;
  pid: number;
}

/**
 * The live leases of the store. Dead ones (their owner gone) are removed on
 * the way, with the staging directories lock.ts leaves when a taker dies.
 */
export async function liveLeases(store: Store): Promise<LeaseHolder[]> {
  const dir = leasesDir(store);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const live: LeaseHolder[] = [];
  for (const name of names) {
    const path = join(dir, name);
    // A taker's staging dir: `.<name>.<token>` (lock.ts; a lease's name is 16 hex, without a dot); gone once
    // renamed, debris when its owner died. Read as `.<name>.lock.<token>` before, a live taker's token was not
    // found, and its staging dir was removed under it (its rename then failed with ENOENT).
    if (name.startsWith('.')) {
      const token = name.slice(name.indexOf('.', 1) + 1);
      if (!tokenAlive(token)) await rm(path, { recursive: true, force: true });
      continue;
    }
    const tokens = await readdir(path).catch(() => [] as string[]);
    const alive = tokens.filter((token) => tokenAlive(token));
    if (alive.length === 0) await rm(path, { recursive: true, force: true });
    else live.push({ name, pid: Number(alive[0].split('.')[0]) });
  }
  return live;
}

export interface GcLockOptions {
  /** Give up waiting for the gc lock and for leases after this long (ms); default 10 minutes. */
  timeoutMs?: number;
  /** Called once when in-flight writers are waited for, with their pids. */
  onWait?: (pids: number[]) => void;
  /** Poll interval while waiting for leases (ms); default 50. */
  pollMs?: number;
}

/**
 * Takes the gc lock and waits until no live lease is left: the store is then
 * the prune's until it releases the lock. Throws ERR_STORE_LOCKED on timeout
 * (the gc lock is released again).
 */
export async function acquireGcLock(store: Store, options: GcLockOptions = {}): Promise<Lock> {
  const deadline = Date.now() + (options.timeoutMs ?? 10 * 60_000);
  const gc = await acquireLock(store.lockPath(GC_LOCK), {
    timeoutMs: options.timeoutMs,
    onWait: () => options.onWait?.([]),
  });
  try {
    let told = false;
    for (;;) {
      const live = await liveLeases(store);
      if (live.length === 0) return gc;
      if (Date.now() > deadline) {
        throw new ConveyorError(
          'ERR_STORE_LOCKED',
          `timed out waiting for ${live.length} store writer(s) to finish (pid ${live.map((l) => l.pid).join(', ')})`,
          {
            hint: 'a pull or unpack is still running; prune when it is done',
          },
        );
      }
      if (!told) {
        told = true;
        options.onWait?.(live.map((l) => l.pid));
      }
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 50));
    }
  } catch (error) {
    await gc.release();
    throw error;
  }
}
