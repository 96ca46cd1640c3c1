/**
 * Durable publication of files in the store, as containerd does: write a
 * temporary file beside the target, fsync it, rename it over the target, then
 * fsync the directory, so that after a crash or power loss the name holds
 * either the old content or the whole new one, and a name we reported as
 * written is still there. A rename alone is atomic but not durable: the
 * kernel may write the directory entry before the file's blocks.
 *
 *   writeFileDurable(path, data)    small files: index.json, meta, state, blobs
 *   publishFile(temp, path)         a file written elsewhere (a download, a
 *                                   packed layer): fsync, rename, fsync dir
 *   syncFile / syncDir              the single steps
 *   syncFilesystem(dir)             a whole unpacked tree before it is marked
 *                                   complete: one `sync -f` (syncfs(2)) per
 *                                   layer instead of an fsync per file
 *   syncFilesystemShared(dir)       the same, one sync shared by the callers
 *   syncDirShared(dir)              that ask while another runs (group commit);
 *                                   writeFileDurable and publishFile sync
 *                                   their directory this way: files that
 *                                   land together (a pull's blobs) share one
 *
 * On failure each throws ERR_STORE_IO naming the path, and for a full,
 * read-only or failing file system saying so (errors.ts storeIoError);
 * writeFileDurable removes its temporary file first, so nothing half-written
 * stays under the target's name or beside it.
 *
 * Not made durable, on purpose: locks and leases (they describe live
 * processes, none of which survives a crash), overlay short links (recreated
 * on use), and what tools write outside the store at the user's request.
 */
// node:fs/promises through node:fs's getter: loaded when first used (a write), not by every reader of the store (issue 17).
import { promises as fsp } from 'node:fs';
import { dirname } from 'node:path';
import { randomHex } from './digest.js';
import { storeIoError } from './errors.js';

export interface DurableWriteOptions {
  /** The temporary file (same directory, so the rename is atomic); default `<path>.<rand>.tmp`. */
  temp?: string;
  /** Mode of a new file (masked by the umask); default 0644. */
  mode?: number;
  /** false: atomic only, no fsync of the file or its directory (a file that cannot outlive a crash anyway); default true. */
  sync?: boolean;
}

/**
 * Writes `data` to `path` atomically and durably (atomically only with `sync: false`). Fails with ERR_STORE_IO
 * naming `path`; leaves no temporary file.
 */
export async function writeFileDurable(path: string, data: string | Buffer, options: DurableWriteOptions = {}): Promise<void> {
  const temp = options.temp ?? `${path}.${randomHex(4)}.tmp`;
  try {
    const handle = await fsp.open(temp, 'wx', options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
      if (options.sync !== false) await handle.sync();
    } finally {
      await handle.close();
    }
    await fsp.rename(temp, path);
  } catch (error) {
    await fsp.rm(temp, { force: true }).catch(() => undefined);
    throw storeIoError(error, { path, doing: 'cannot write' });
  }
  if (options.sync !== false) await syncDirShared(dirname(path));
}

/** Publishes a finished file under its final name: fsync, rename, fsync the directory. The caller removes `temp` on failure. */
export async function publishFile(temp: string, path: string): Promise<void> {
  await syncFile(temp);
  try {
    await fsp.rename(temp, path);
  } catch (error) {
    throw storeIoError(error, { path, doing: 'cannot rename into' });
  }
  // Shared: blobs that land together (a pull's layers) cost one fsync of blobs/, not one each.
  await syncDirShared(dirname(path));
}

/** fsync(2) of whatever `path` names (opened read-only: a directory cannot be opened for writing). */
async function fsyncPath(path: string): Promise<void> {
  const handle = await fsp.open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsync(2) of a file's data and metadata. */
export async function syncFile(path: string): Promise<void> {
  try {
    await fsyncPath(path);
  } catch (error) {
    throw storeIoError(error, { path, doing: 'cannot sync' });
  }
}

/** fsync(2) of a directory, making the names created, renamed or removed in it durable. */
export async function syncDir(dir: string): Promise<void> {
  try {
    await fsyncPath(dir);
  } catch (error) {
    // A file system that cannot sync directories (some FUSE ones) has nothing more to give.
    if ((error as NodeJS.ErrnoException).code === 'EINVAL') return;
    throw storeIoError(error, { path: dir, doing: 'cannot sync' });
  }
}

/**
 * Flushes everything written on the file system holding `dir` (syncfs(2),
 * through coreutils' `sync -f`: Node has no binding). Cheaper than an fsync
 * per file for a tree of thousands (bench/durability.sh measured both).
 */
export async function syncFilesystem(dir: string): Promise<void> {
  // Loaded here: node:child_process is for the unpack that ends in this sync, not for every reader of the store.
  const { runProcess } = await import('./subprocess.js');
  const result = await runProcess('sync', ['-f', dir]);
  if (result.failed) {
    const why = result.stderr.trim() || result.shortMessage;
    throw storeIoError(new Error(why), { path: dir, doing: 'cannot sync the file system of' });
  }
}

/** The sync running for a key and the one queued after it (shared). */
interface SyncGroup {
  running?: Promise<void>;
  next?: Promise<void>;
}

const syncGroups = new Map<string, SyncGroup>();

/**
 * Group commit: runs `sync` for `key` so that the caller's promise resolves
 * once a sync that STARTED after this call has finished. A caller that comes
 * while a sync runs waits for the next one (the running one may have missed
 * its writes), and every caller that comes meanwhile shares that next one.
 * Each caller gets the failure of the sync it waited for.
 */
function shared(key: string, sync: () => Promise<void>): Promise<void> {
  let group = syncGroups.get(key);
  if (!group) {
    group = {};
    syncGroups.set(key, group);
  }
  const g = group;
  const start = (): Promise<void> => {
    const running: Promise<void> = sync().finally(() => {
      if (g.running === running) g.running = undefined;
    });
    g.running = running;
    return running;
  };
  if (!g.running) return start();
  if (!g.next) {
    const ignore = () => undefined;
    g.next = g.running.then(ignore, ignore).then(() => {
      g.next = undefined;
      return start();
    });
  }
  return g.next;
}

/**
 * syncFilesystem(dir), shared (group commit, see `shared`): everything the
 * caller wrote before calling is on disk when it resolves, and layers that
 * finish together cost one `sync -f`, not one each. Pass the same `dir` for
 * one file system. Fails as syncFilesystem does.
 */
export function syncFilesystemShared(dir: string): Promise<void> {
  return shared(`fs\0${dir}`, () => syncFilesystem(dir));
}

/**
 * syncDir(dir), shared (group commit, see `shared`): the names the caller
 * created, renamed or removed in `dir` before calling are durable when it
 * resolves; renames that land together cost one fsync. Fails as syncDir does.
 */
export function syncDirShared(dir: string): Promise<void> {
  return shared(`dir\0${dir}`, () => syncDir(dir));
}
