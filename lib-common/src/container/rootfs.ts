/**
 * Looking things up inside a container's root filesystem without leaving it.
 * The image is hostile input: /etc/passwd may be a symlink to /etc/shadow on
 * the host, a PATH directory may be `../../..`. Every path is resolved one
 * component at a time, symlinks are followed by hand relative to the root and
 * `..` never climbs above it (as filepath-securejoin does), and files are
 * opened with O_NOFOLLOW after resolution. Shared by ctr-spawn, ctr-exec and
 * img-build (COPY/ADD sources and destinations, with their own error codes).
 *
 * Failure: ERR_SPAWN_FAILED for a symlink loop, a file too large to read or a
 * path component that is not a directory; ERR_SPAWN_UNSAFE_WORKDIR for a
 * working directory in /proc. A missing file is undefined, not an error.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { lstat, mkdir, readlink, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { ConveyorError, type ErrorCode } from '../errors.js';
import type { RootTree } from '../overlay/layered.js';

export type { RootTree };

/** A root given as a directory, or a tree. */
export type Root = string | RootTree;

/** The tree of a directory: paths joined to it. */
function directoryTree(root: string): RootTree {
  const at = (rel: string) => (rel === '' ? root : join(root, rel));
  return {
    name: root,
    lstat: (rel) =>
      lstat(at(rel)).catch((error) => {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
        throw error;
      }),
    readlink: (rel) => readlink(at(rel)),
    hostPath: at,
  };
}

const treeOf = (root: Root): RootTree => (typeof root === 'string' ? directoryTree(root) : root);

/** securejoin's limit on symlinks followed in one lookup (Linux's own MAXSYMLINKS is 40). */
const MAX_SYMLINKS = 255;

export interface ScopedPath {
  /** The host path, under the root. */
  hostPath: string;
  /** The same path relative to the root, components joined by '/' ('' for the root). */
  relative: string;
}

/**
 * `path` (absolute or relative: both are taken from the root) inside `root`,
 * a tree that holds hostile symlinks (an image's rootfs, a build context):
 * securejoin semantics, as moby's FollowSymlinkInScope and
 * cyphar/filepath-securejoin. Every component is looked up with lstat; a
 * symlink is followed with its target read as if the root were `/` (an
 * absolute target restarts at the root, `..` never climbs above it), so the
 * result is always under the root whatever the links say. With
 * `followFinal` false a symlink as the last component is not followed (the
 * caller replaces or reads the link itself). Missing components are kept as
 * written; a `..` that climbs back out of them resumes the lookup, so a
 * symlink after it is still followed inside the root.
 *
 * A symlink loop, or a component that cannot be looked up for another reason
 * than not existing, fails with `options.code`: the caller says what the path
 * was (ERR_SPAWN_FAILED for a container's, ERR_BUILD_SOURCE/ERR_BUILD_DEST
 * for a COPY's).
 *
 * What it cannot stop is a concurrent writer swapping a component between
 * this lookup and the caller's use: callers use it on trees nothing else
 * writes meanwhile, and open final components without following them.
 */
export async function resolveScoped(root: Root, path: string, options: { followFinal?: boolean; code: ErrorCode }): Promise<ScopedPath> {
  const tree = treeOf(root);
  const followFinal = options.followFinal ?? true;
  const pending = path.split('/').filter((part) => part !== '' && part !== '.');
  const current: string[] = [];
  let links = 0;
  // Index in `current` of the first component that does not exist; -1 while everything so far does.
  let missingFrom = -1;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === '..') {
      current.pop();
      if (missingFrom >= current.length) missingFrom = -1;
      continue;
    }
    if (missingFrom >= 0) {
      current.push(part);
      continue;
    }
    const candidate = [...current, part].join('/');
    let info;
    try {
      info = await tree.lstat(candidate);
    } catch (error) {
      throw new ConveyorError(options.code, `${tree.hostPath(candidate)}: ${(error as Error).message}`, { cause: error });
    }
    if (!info) {
      missingFrom = current.length;
      current.push(part);
      continue;
    }
    if (info.isSymbolicLink() && (pending.length > 0 || followFinal)) {
      if (++links > MAX_SYMLINKS) {
        throw new ConveyorError(options.code, `${path}: too many levels of symbolic links under ${tree.name}`, {
          hint: 'a symlink loop in the image or the build context',
        });
      }
      const target = await tree.readlink(candidate);
      if (target.startsWith('/')) current.length = 0;
      pending.unshift(...target.split('/').filter((component) => component !== '' && component !== '.'));
      continue;
    }
    current.push(part);
  }
  const relative = current.join('/');
  return { hostPath: tree.hostPath(relative), relative };
}

/** resolveScoped's host path, failing with ERR_SPAWN_FAILED: for the container tools, whose paths are the image's. */
export async function resolveInRoot(root: Root, path: string, followFinal = true): Promise<string> {
  return (await resolveScoped(root, path, { followFinal, code: 'ERR_SPAWN_FAILED' })).hostPath;
}

/**
 * Reads a small regular file inside the root; undefined when it does not exist or is not a regular file.
 * Synchronously once found (O_NONBLOCK: a FIFO planted there does not block the open): four calls
 * on a small file (/etc/passwd, /etc/group) cost less than four trips through libuv's thread pool.
 */
export async function readRootFile(root: Root, path: string, maxBytes = 4 * 1024 * 1024): Promise<string | undefined> {
  const host = await resolveInRoot(root, path);
  let fd: number;
  try {
    fd = openSync(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const info = fstatSync(fd);
    if (!info.isFile()) return undefined;
    if (info.size > maxBytes) throw new ConveyorError('ERR_SPAWN_FAILED', `${path} in the image is larger than ${maxBytes} bytes`);
    const buffer = Buffer.alloc(info.size);
    const bytesRead = readSync(fd, buffer, 0, info.size, 0);
    return buffer.toString('utf8', 0, bytesRead);
  } finally {
    closeSync(fd);
  }
}

export type CommandLookup = { status: 'found'; path: string } | { status: 'not-found'; path: string } | { status: 'not-executable'; path: string; why: string };

async function check(root: Root, path: string): Promise<CommandLookup> {
  const tree = treeOf(root);
  const { relative } = await resolveScoped(tree, path, { code: 'ERR_SPAWN_FAILED' });
  // Fully resolved inside the root: not a symlink, so lstat is stat (a dangling link's target is missing).
  const info = await tree.lstat(relative).catch(() => undefined);
  if (!info || info.isSymbolicLink()) return { status: 'not-found', path };
  if (info.isDirectory()) return { status: 'not-executable', path, why: 'is a directory' };
  if (!info.isFile()) return { status: 'not-executable', path, why: 'is not a regular file' };
  if ((info.mode & 0o111) === 0) return { status: 'not-executable', path, why: 'permission denied' };
  return { status: 'found', path };
}

/**
 * Finds the command as execvp in the container would: a name with a slash is
 * taken relative to cwd, a bare name is searched in PATH. A file found but not
 * executable is reported as such (exit 126) unless an executable one comes later.
 */
export async function findCommand(root: Root, command: string, pathEnv: string | undefined, cwd: string): Promise<CommandLookup> {
  if (command.includes('/')) return check(root, posix.resolve(cwd, command));
  const dirs = (pathEnv ?? DEFAULT_PATH).split(':');
  let notExecutable: CommandLookup | undefined;
  for (const dir of dirs) {
    const result = await check(root, posix.resolve(cwd, dir === '' ? '.' : dir, command));
    if (result.status === 'found') return result;
    if (result.status === 'not-executable' && !notExecutable) notExecutable = result;
  }
  return notExecutable ?? { status: 'not-found', path: command };
}

/** Docker's PATH when the image sets none. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Creates a directory (and parents) inside the root, resolving each component inside it. */
export async function mkdirInRoot(root: string, path: string, mode = 0o755): Promise<void> {
  const parts = path.split('/').filter((c) => c !== '' && c !== '.' && c !== '..');
  let current = '/';
  for (const part of parts) {
    current = posix.join(current, part);
    const host = await resolveInRoot(root, current);
    try {
      await mkdir(host, { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const info = await stat(host);
      if (!info.isDirectory()) throw new ConveyorError('ERR_SPAWN_FAILED', `${current} in the image is not a directory`);
    }
  }
}

/**
 * Refuses a working directory in the container's /proc, by name or through a
 * symlink in the image: a descriptor the runtime leaks there reaches the host
 * (CVE-2024-21626; runc before 1.1.12 is exposed).
 */
export async function checkWorkdir(rootfs: Root, cwd: string): Promise<void> {
  const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
  const { relative } = await resolveScoped(rootfs, cwd, { code: 'ERR_SPAWN_FAILED' });
  if (under(posix.normalize(cwd), '/proc') || under(`/${relative}`, '/proc')) {
    throw new ConveyorError('ERR_SPAWN_UNSAFE_WORKDIR', `working directory ${JSON.stringify(cwd)} is in /proc`, {
      hint: 'a working directory under /proc can reach the host through a leaked descriptor (CVE-2024-21626); choose another with -w',
    });
  }
}
