/**
 * The cgroups a container's runtime makes under `cgroupsPath` (one directory
 * per v1 hierarchy, or the unified v2 one): finding them, removing what the
 * runtime left, and reading their usage (ctr-stats).
 *
 * Failure: removeCgroups never throws (it returns what it could not remove);
 * the readers return undefined for a file that is missing or unreadable.
 */
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';

export const CGROUP_ROOT = '/sys/fs/cgroup';

/** True when the memory controller can limit swap (cgroup v1 memsw files, or v2). */
export function swapLimitSupported(): boolean {
  if (existsSync(join(CGROUP_ROOT, 'cgroup.controllers'))) return true;
  return existsSync(join(CGROUP_ROOT, 'memory', 'memory.memsw.limit_in_bytes'));
}

/** Every directory a cgroup path maps to: one per v1 hierarchy, the unified one, or pure v2. */
export function cgroupDirs(cgroupsPath: string): string[] {
  const rel = cgroupsPath.replace(/^\/+/, '');
  const dirs = [join(CGROUP_ROOT, rel)];
  try {
    for (const entry of readdirSync(CGROUP_ROOT)) dirs.push(join(CGROUP_ROOT, entry, rel));
  } catch {
    // no cgroupfs: nothing to find
  }
  return dirs.filter((d) => existsSync(d));
}

/** Removes cgroup directories the runtime left behind (empty ones only: rmdir). */
export function removeCgroups(cgroupsPath: string): string[] {
  const left: string[] = [];
  for (const dir of cgroupDirs(cgroupsPath)) {
    try {
      rmdirSync(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
    }
  }
  return left;
}
