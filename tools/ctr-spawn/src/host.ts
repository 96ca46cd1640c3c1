/**
 * Facts about the host the spec must respect: the open-files hard limit (a
 * container cannot be given more without CAP_SYS_RESOURCE), the capability
 * bounding set (what --privileged can grant), the cgroup layout, and where a
 * static init binary is.
 */
import { existsSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { ALL_CAPS } from './spec.js';

/** The hard RLIMIT_NOFILE of this process, capped at Docker's 1048576. */
export function nofileHardLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    if (hard === 'unlimited') return 1048576;
    const n = Number(hard);
    return Number.isInteger(n) && n > 0 ? Math.min(n, 1048576) : 1024;
  } catch {
    return 1024;
  }
}

/** Capabilities in this process's bounding set (CapBnd), by name. */
export function boundingCaps(): string[] {
  try {
    const line = readFileSync('/proc/self/status', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('CapBnd:'));
    const mask = BigInt(`0x${line!.split(/\s+/)[1]}`);
    return ALL_CAPS.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
  } catch {
    return ALL_CAPS;
  }
}

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

/** A static init that reaps zombies and forwards signals (tini, as docker-init is). */
export const INIT_CANDIDATES = ['/usr/bin/tini-static', '/usr/libexec/docker/docker-init', '/usr/bin/docker-init', '/sbin/tini-static'];

export function findInit(): string | undefined {
  return INIT_CANDIDATES.find((p) => existsSync(p));
}
