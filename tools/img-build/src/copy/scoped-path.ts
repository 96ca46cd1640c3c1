/**
 * Paths inside a root that holds hostile symlinks (an image's rootfs, a build
 * context): securejoin semantics, as moby's FollowSymlinkInScope and
 * cyphar/filepath-securejoin. Every component is looked up with lstat; a
 * symlink is followed with its target read as if the root were `/` (an
 * absolute target restarts at the root, `..` never climbs above it), so the
 * result is always under the root whatever the links say.
 *
 * What it cannot stop is a concurrent writer swapping a component between
 * this lookup and the caller's use: callers use it on trees nothing else
 * writes while a step runs (the build's own rootfs, the context), and write
 * final components without following them (O_EXCL|O_NOFOLLOW, lstat).
 */
import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';

/** Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS is 40; securejoin uses 255). */
const MAX_SYMLINKS = 255;

export interface ScopedPath {
  /** The host path, under the root. */
  hostPath: string;
  /** The same path relative to the root, components joined by '/' ('' for the root). */
  relative: string;
}

/**
 * Resolves `path` (absolute or relative: both are taken from the root) inside
 * `root`. With `followFinal` false the last component is not followed when it
 * is a symlink (the caller replaces or reads the link itself). Missing
 * components are kept as written (`..` after one is applied lexically).
 * A symlink loop fails with `options.code` (ERR_BUILD_DEST by default: the
 * caller says whether the path was a source or a destination).
 */
export async function resolveInRoot(
  root: string,
  path: string,
  options: { followFinal?: boolean; code?: 'ERR_BUILD_SOURCE' | 'ERR_BUILD_DEST' } = {},
): Promise<ScopedPath> {
  const followFinal = options.followFinal ?? true;
  const pending = path.split('/').filter((part) => part !== '' && part !== '.');
  const current: string[] = [];
  let links = 0;
  let missing = false;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '..') {
      current.pop();
      continue;
    }
    if (missing) {
      current.push(part);
      continue;
    }
    const candidate = join(root, ...current, part);
    let info;
    try {
      info = await lstat(candidate);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new ConveyorError('ERR_STORE_IO', `${candidate}: ${(error as Error).message}`, { cause: error });
      missing = true;
      current.push(part);
      continue;
    }
    if (info.isSymbolicLink() && (pending.length > 0 || followFinal)) {
      if (++links > MAX_SYMLINKS) {
        throw new ConveyorError(options.code ?? 'ERR_BUILD_DEST', `${path}: too many levels of symbolic links under ${root}`, {
          hint: 'a symlink loop in the image or the context',
        });
      }
      const target = await readlink(candidate);
      if (target.startsWith('/')) current.length = 0;
      pending.unshift(...target.split('/').filter((component) => component !== '' && component !== '.'));
      continue;
    }
    current.push(part);
  }
  const relative = current.join('/');
  return { hostPath: relative ? join(root, relative) : root, relative };
}
