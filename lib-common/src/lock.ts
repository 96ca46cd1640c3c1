/**
 * Cross-process locks that at most one process holds, and that a crashed
 * holder (kill -9) never wedges.
 *
 * Node has no flock(2), and the obvious file lock (O_EXCL create, break a
 * dead owner's file by read-compare-unlink) lets two waiters both break it
 * and both hold it: unlink removes whatever file is there by then, possibly a
 * fresh one. Breaking must remove *only the dead owner's* lock. So a lock is
 * a directory holding one entry named by its owner's token:
 *
 *   <name>.lock/<pid>.<start time>.<random>
 *
 * - Take: build `.<name>.lock.<token>` (the directory with the token entry)
 *   beside it and rename(2) it to `<name>.lock`. rename replaces a missing or
 *   *empty* directory and fails (ENOTEMPTY/EEXIST) on a non-empty one, so it
 *   succeeds only when no lock is held. A held lock is never empty: it appears
 *   with its token already inside.
 * - Release: unlink our token entry, then rmdir (which fails harmlessly if a
 *   next holder has already renamed its own lock over the empty directory).
 * - Break: a waiter that sees a token whose process is dead unlinks *that
 *   entry by name*, and nothing else. Tokens are unique, so this can only ever
 *   remove the dead owner's claim; racing breakers just get ENOENT. The empty
 *   directory left behind is taken over by the next rename.
 *
 * A token is alive while its pid runs with the same start time (from
 * /proc/<pid>/stat), so a recycled pid does not keep a dead lock alive. A
 * holder killed while taking or releasing leaves only an empty lock directory
 * (taken over by the next rename) or a `.…` staging directory (removed when
 * its owner is found dead).
 */
import { readFileSync } from 'node:fs';
// node:fs/promises through node:fs's getter: loaded when first used (a write), not by every reader of the store (issue 17).
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomHex } from './digest.js';
import { ConveyorError } from './errors.js';

export interface Lock {
  release(): Promise<void>;
}

export interface LockOptions {
  /** Give up after this long (ms); default 10 minutes, since a peer may be downloading a large layer. */
  timeoutMs?: number;
  /** Called once when we start waiting, for a progress message. */
  onWait?: () => void;
}

const TOKEN = /^(\d+)\.(\d+)\.[a-f0-9]+$/;

/** Field 22 of /proc/<pid>/stat: start time in clock ticks since boot; undefined when there is no such process. */
export function startTime(pid: number | 'self'): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return text.slice(text.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

let ownStart: string | undefined;

function newToken(): string {
  ownStart ??= startTime('self') ?? '0';
  return `${process.pid}.${ownStart}.${randomHex(8)}`;
}

/**
 * A fresh owner token of this process (`<pid>.<start time>.<random>`), for
 * names of files whose owner must be recognisable after a crash (tokenAlive):
 * img-import's `ingest/import-<token>` staging files.
 */
export function ownerToken(): string {
  return newToken();
}

/** Whether the process that made `token` still runs. Unparseable tokens are nobody's. */
export function tokenAlive(token: string): boolean {
  const match = TOKEN.exec(token);
  if (!match) return false;
  const pid = Number(match[1]);
  const started = startTime(pid);
  if (started !== undefined) return match[2] === '0' || started === match[2];
  // No /proc entry: dead, unless /proc is not mounted at all (then ask the kernel).
  if (startTime('self') !== undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether process `pid` still runs and is the one that started at `started`
 * (startTime's clock ticks): a recycled pid is another process. Without a
 * start time, whether any process has the pid.
 */
export function processAlive(pid: number, started?: string): boolean {
  return tokenAlive(`${pid}.${started ?? '0'}.0`);
}

/** Removes staging directories of `path` whose owners are gone (a taker killed between mkdir and rename). */
async function cleanStaging(path: string): Promise<void> {
  const prefix = `.${basename(path)}.`;
  const names = await fsp.readdir(dirname(path)).catch(() => [] as string[]);
  for (const name of names) {
    const token = name.slice(prefix.length);
    // Only names that are a staging dir of this lock (another lock's name could share the prefix).
    if (name.startsWith(prefix) && TOKEN.test(token) && !tokenAlive(token)) await fsp.rm(join(dirname(path), name), { recursive: true, force: true });
  }
}

/**
 * One look at the lock: the live owner's pid, or undefined after breaking a
 * dead owner's claim (or finding none), so the caller retries at once.
 */
async function inspect(path: string): Promise<number | undefined> {
  let entries: string[];
  try {
    entries = await fsp.readdir(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code !== 'ENOTDIR') throw error;
    // A lock file from an older conveyor: its owner's pid is its first word.
    const owner = await fsp.readFile(path, 'utf8').catch(() => '');
    const pid = Number.parseInt(owner, 10);
    const old = Date.now() - ((await fsp.stat(path).catch(() => undefined))?.mtimeMs ?? 0) > 5000;
    if (Number.isInteger(pid) && pid > 0 ? !isPidAlive(pid) : old) await fsp.unlink(path).catch(() => undefined);
    return Number.isInteger(pid) && pid > 0 && isPidAlive(pid) ? pid : undefined;
  }
  let live: number | undefined;
  for (const entry of entries) {
    if (tokenAlive(entry)) live = Number(TOKEN.exec(entry)![1]);
    // Only this dead claim, by its unique name: a live lock taken meanwhile has another.
    // (rm, not unlink: debris that is not a token file must not keep the lock busy forever.)
    else await fsp.rm(join(path, entry), { recursive: true, force: true }).catch(() => undefined);
  }
  if (live === undefined) await cleanStaging(path);
  return live;
}

function isPidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock at `path`, waiting while a live process holds it. Fails with ERR_STORE_LOCKED on timeout. */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<Lock> {
  const deadline = Date.now() + (options.timeoutMs ?? 10 * 60_000);
  let waited = false;
  let delay = 5;
  // Lock dirs live in the store: owner-only, like every directory we make there.
  await fsp.mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const token = newToken();
  const staging = join(dirname(path), `.${basename(path)}.${token}`);
  await fsp.mkdir(staging, { mode: 0o700 });
  try {
    await fsp.writeFile(join(staging, token), '');
    for (;;) {
      try {
        await fsp.rename(staging, path);
        return { release: () => releaseLock(path, token) };
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw error;
      }
      const owner = await inspect(path);
      if (owner === undefined && Date.now() <= deadline) continue;
      if (Date.now() > deadline) {
        throw new ConveyorError(
          'ERR_STORE_LOCKED',
          `timed out waiting for lock ${path} held by ${owner === undefined ? 'a process that keeps changing' : `pid ${owner}`}`,
          {
            hint: 'another conveyor process is working on the same item; retry when it is done',
          },
        );
      }
      if (!waited) {
        waited = true;
        options.onWait?.();
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 200);
    }
  } catch (error) {
    await fsp.rm(staging, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
}

async function releaseLock(path: string, token: string): Promise<void> {
  // Our claim only; if someone wrongly broke it, there is nothing of ours left to remove.
  await fsp.unlink(join(path, token)).catch(() => undefined);
  await fsp.rmdir(path).catch(() => undefined);
}

export async function withLock<T>(path: string, fn: () => Promise<T>, options?: LockOptions): Promise<T> {
  const lock = await acquireLock(path, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
