/**
 * Cross-process locks as O_EXCL files holding the owner's pid. A lock whose
 * owner died (kill -9, crash) is stale and is broken by the next taker, so a
 * crash never wedges the store.
 */
import { open, readFile, unlink, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConveyorError } from './errors.js';

/** How long an empty lock file may exist before it counts as abandoned. */
const EMPTY_LOCK_GRACE_MS = 5000;

export interface Lock {
  release(): Promise<void>;
}

export interface LockOptions {
  /** Give up after this long (ms); default 10 minutes, since a peer may be downloading a large layer. */
  timeoutMs?: number;
  /** Called once when we start waiting, for a progress message. */
  onWait?: () => void;
}

function isAlive(pid: number): boolean {
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
  await mkdir(dirname(path), { recursive: true });
  for (;;) {
    try {
      const handle = await open(path, 'wx', 0o644);
      const token = `${process.pid} ${Date.now()}-${Math.random()}`;
      try {
        await handle.writeFile(token);
      } catch (error) {
        // Never leave an ownerless lock behind for others to wait on.
        await handle.close().catch(() => undefined);
        await unlink(path).catch(() => undefined);
        throw error;
      }
      await handle.close();
      return {
        release: async () => {
          const current = await readFile(path, 'utf8').catch(() => '');
          if (current === token) await unlink(path).catch(() => undefined);
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = await readFile(path, 'utf8').catch(() => undefined);
    const pid = owner === undefined ? NaN : Number.parseInt(owner, 10);
    // An empty lock is a taker between create and write, or one that crashed there: stale after a grace period.
    const emptyAndOld = owner === '' && Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? Date.now()) > EMPTY_LOCK_GRACE_MS;
    if (emptyAndOld || (owner !== undefined && owner !== '' && (!Number.isInteger(pid) || !isAlive(pid)))) {
      // Stale: break it only if it still holds the same dead owner's token.
      const again = await readFile(path, 'utf8').catch(() => undefined);
      if (again === owner) await unlink(path).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) {
      throw new ConveyorError('ERR_STORE_LOCKED', `timed out waiting for lock ${path} held by pid ${pid}`, {
        hint: 'another conveyor process is working on the same item; retry when it is done',
      });
    }
    if (!waited) {
      waited = true;
      options.onWait?.();
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 200);
  }
}

export async function withLock<T>(path: string, fn: () => Promise<T>, options?: LockOptions): Promise<T> {
  const lock = await acquireLock(path, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
