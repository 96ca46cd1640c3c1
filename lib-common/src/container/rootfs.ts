/**
 * Looking things up inside a container's root filesystem without leaving it.
 * The image is hostile input: /etc/passwd may be a symlink to /etc/shadow on
 * the host, a PATH directory may be `../../..`. Every path is resolved one
 * component at a time, symlinks are followed by hand relative to the root and
 * `..` never climbs above it (as filepath-securejoin does), and files are
 * opened with O_NOFOLLOW after resolution. Shared by ctr-spawn and ctr-exec.
 *
 * Failure: ERR_SPAWN_FAILED for a symlink loop, a file too large to read or a
 * path component that is not a directory; ERR_SPAWN_UNSAFE_WORKDIR for a
 * working directory in /proc. A missing file is undefined, not an error.
 */
import { constants } from 'node:fs';
import { lstat, mkdir, open, readlink, stat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { ConveyorError } from '../errors.js';

const MAX_SYMLINKS = 40;

/**
 * The host path of `path` inside `root`, following symlinks inside the root
 * (absolute targets are relative to root, `..` stops at root). Components that
 * do not exist are appended as they are. With followFinal false, a symlink as
 * the last component is not followed.
 */
export async function resolveInRoot(root: string, path: string, followFinal = true): Promise<string> {
  let pending = path.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '..') {
      done.pop();
      continue;
    }
    const candidate = join(root, ...done, part);
    let info;
    try {
      info = await lstat(candidate);
    } catch {
      return join(root, ...done, part, ...pending.filter((c) => c !== '..'));
    }
    if (info.isSymbolicLink() && (pending.length > 0 || followFinal)) {
      if (++links > MAX_SYMLINKS) throw new ConveyorError('ERR_SPAWN_FAILED', `too many levels of symbolic links resolving ${path} in the image`);
      const target = await readlink(candidate);
      if (target.startsWith('/')) done.length = 0;
      pending = [...target.split('/').filter((c) => c !== '' && c !== '.'), ...pending];
      continue;
    }
    done.push(part);
  }
  return join(root, ...done);
}

/** Reads a small regular file inside the root; undefined when it does not exist or is not a regular file. */
export async function readRootFile(root: string, path: string, maxBytes = 4 * 1024 * 1024): Promise<string | undefined> {
  const host = await resolveInRoot(root, path);
  let handle;
  try {
    handle = await open(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) return undefined;
    if (info.size > maxBytes) throw new ConveyorError('ERR_SPAWN_FAILED', `${path} in the image is larger than ${maxBytes} bytes`);
    const buffer = Buffer.alloc(info.size);
    const { bytesRead } = await handle.read(buffer, 0, info.size, 0);
    return buffer.toString('utf8', 0, bytesRead);
  } finally {
    await handle.close();
  }
}

export type CommandLookup = { status: 'found'; path: string } | { status: 'not-found'; path: string } | { status: 'not-executable'; path: string; why: string };

async function check(root: string, path: string): Promise<CommandLookup> {
  const host = await resolveInRoot(root, path);
  let info;
  try {
    info = await stat(host); // host is fully resolved inside root; stat cannot leave it
  } catch {
    return { status: 'not-found', path };
  }
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
export async function findCommand(root: string, command: string, pathEnv: string | undefined, cwd: string): Promise<CommandLookup> {
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
export async function checkWorkdir(rootfs: string, cwd: string): Promise<void> {
  const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
  const resolved = await resolveInRoot(rootfs, cwd);
  if (under(posix.normalize(cwd), '/proc') || under(resolved, `${rootfs.replace(/\/+$/, '')}/proc`)) {
    throw new ConveyorError('ERR_SPAWN_UNSAFE_WORKDIR', `working directory ${JSON.stringify(cwd)} is in /proc`, {
      hint: 'a working directory under /proc can reach the host through a leaked descriptor (CVE-2024-21626); choose another with -w',
    });
  }
}
