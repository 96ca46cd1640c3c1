/**
 * Writing into the stage's rootfs, which holds the image's (hostile)
 * symlinks. The caller hands in a parent directory already resolved inside
 * the rootfs (resolveScoped, lib-common/container/rootfs.ts) or created by us; here the last component is
 * never followed: whatever is at the name is removed and the new entry made
 * in its place (O_CREAT|O_EXCL|O_NOFOLLOW semantics: copyFile with
 * COPYFILE_EXCL, symlink and mkdir all fail on an existing name, so nothing
 * is ever written through a link). A directory over an existing directory is
 * kept (merged), as moby's untar does.
 */
import { constants, type Stats } from 'node:fs';
import { chmod, copyFile, lchown, link, lstat, lutimes, mkdir, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { ConveyorError, storeIoError } from '@conveyor/lib-common/errors';

export interface Metadata {
  uid: number;
  gid: number;
  /** Permission bits with setuid/setgid/sticky (ignored for symlinks). */
  mode: number;
  mtime: Date;
  atime?: Date;
}

/** ERR_STORE_IO naming the path; a full or read-only disk in words (ENOSPC, EROFS: lib-common errors.ts). */
function ioError(error: unknown, path: string): ConveyorError {
  return storeIoError(error, { path, doing: 'cannot write' });
}

/** What is at `path` now (not followed), or undefined. */
export async function existing(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ENOTDIR') throw new ConveyorError('ERR_BUILD_DEST', `${path}: a parent is not a directory`);
    throw ioError(error, path);
  }
}

/** Removes whatever is at `path` (a directory with everything in it; links themselves, never their targets). */
async function clear(path: string, info: Stats | undefined): Promise<void> {
  if (!info) return;
  if (info.isDirectory()) await rm(path, { recursive: true, force: true });
  else await unlink(path);
}

/** Owner, then mode (chown clears setuid bits), then times; on the entry itself, never a link's target. */
export async function applyMetadata(path: string, kind: 'directory' | 'file' | 'symlink', meta: Metadata): Promise<void> {
  try {
    await lchown(path, meta.uid, meta.gid);
    if (kind !== 'symlink') await chmod(path, meta.mode & 0o7777);
    await lutimes(path, meta.atime ?? meta.mtime, meta.mtime);
  } catch (error) {
    throw ioError(error, path);
  }
}

/** A directory at `path`: an existing one is kept, anything else replaced. True when it was created. */
export async function ensureDirectory(path: string): Promise<boolean> {
  const info = await existing(path);
  if (info?.isDirectory()) return false;
  try {
    await clear(path, info);
    await mkdir(path, { mode: 0o755 });
  } catch (error) {
    throw ioError(error, path);
  }
  return true;
}

/** Replaces `path` with a copy of the regular file `source`. */
export async function replaceWithFile(path: string, source: string): Promise<void> {
  try {
    await clear(path, await existing(path));
    await copyFile(source, path, constants.COPYFILE_EXCL);
  } catch (error) {
    throw ioError(error, path);
  }
}

/** Replaces `path` with a file holding `data`. */
export async function replaceWithData(path: string, data: string | Buffer): Promise<void> {
  try {
    await clear(path, await existing(path));
    await writeFile(path, data, { flag: constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode: 0o600 });
  } catch (error) {
    throw ioError(error, path);
  }
}

/** Replaces `path` with a hardlink to `existingPath` (a file this copy wrote). */
export async function replaceWithHardlink(path: string, existingPath: string): Promise<void> {
  try {
    await clear(path, await existing(path));
    await link(existingPath, path);
  } catch (error) {
    throw ioError(error, path);
  }
}

/** Replaces `path` with a symlink to `target` (verbatim: an absolute target means the image's root, and is only ever resolved inside it). */
export async function replaceWithSymlink(path: string, target: string): Promise<void> {
  try {
    await clear(path, await existing(path));
    await symlink(target, path);
  } catch (error) {
    throw ioError(error, path);
  }
}

/**
 * Creates the missing directories of `relative` (a path inside `rootfs`
 * whose existing components are real directories: resolved by
 * resolveScoped) as 0755, owned by `owner` (COPY --chown: Docker's classic
 * builder and buildah give the directories a COPY creates its owner too) or
 * root; existing ones keep their owner and mode.
 */
export async function mkdirsInRoot(rootfs: string, relative: string, owner: { uid: number; gid: number } = { uid: 0, gid: 0 }): Promise<void> {
  let current = rootfs;
  for (const part of relative.split('/').filter(Boolean)) {
    current = posix.join(current, part);
    const info = await existing(current);
    if (info?.isDirectory()) continue;
    if (info) {
      throw new ConveyorError('ERR_BUILD_DEST', `/${posix.relative(rootfs, current)} in the image is not a directory`, {
        hint: 'the destination passes through a file',
      });
    }
    try {
      await mkdir(current, { mode: 0o755 });
    } catch (error) {
      // Made meanwhile by someone else (another copy into this rootfs): fine when it is a directory.
      if ((error as NodeJS.ErrnoException).code === 'EEXIST' && (await existing(current))?.isDirectory()) continue;
      throw ioError(error, current);
    }
    try {
      await lchown(current, owner.uid, owner.gid);
      await chmod(current, 0o755);
    } catch (error) {
      throw ioError(error, current);
    }
  }
}
