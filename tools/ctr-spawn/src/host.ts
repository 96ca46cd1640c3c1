/**
 * Facts about the host the spec must respect: the open-files hard limit (a
 * container cannot be given more without CAP_SYS_RESOURCE), the capability
 * bounding set (what --privileged can grant), the cgroup layout, and where a
 * static init binary is.
 */
import { existsSync, readFileSync } from 'node:fs';
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

/** A static init that reaps zombies and forwards signals (tini, as docker-init is). */
export const INIT_CANDIDATES = ['/usr/bin/tini-static', '/usr/libexec/docker/docker-init', '/usr/bin/docker-init', '/sbin/tini-static'];

export function findInit(): string | undefined {
  return INIT_CANDIDATES.find((p) => existsSync(p));
}
