/**
 * Facts about the host the spec must respect: the open-files hard limit (a
 * container cannot be given more without CAP_SYS_RESOURCE), the capability
 * bounding set (what --privileged can grant), the cgroup layout, where a
 * static init binary is, and the host's device nodes (--device,
 * --privileged), the programs on PATH (--net's pasta or slirp4netns). A
 * --device that is not a device node is an ERR_USAGE.
 */
import { accessSync, constants, existsSync, lstatSync, readdirSync, readFileSync, statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { ALL_CAPS, type DeviceNode } from './spec.js';

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

/** Linux's dev_t split (glibc's gnu_dev_major/minor), within JS's exact integers. */
function majorMinor(rdev: number): { major: number; minor: number } {
  const high = Math.floor(rdev / 2 ** 32);
  const low = rdev % 2 ** 32;
  return { major: ((low >>> 8) & 0xfff) | ((high & 0xfffff000) >>> 0), minor: ((low & 0xff) | ((low >>> 12) & 0xfff00)) + (high & 0xfff) * 2 ** 20 };
}

function nodeOf(stats: Stats, path: string, access: string): DeviceNode | undefined {
  const type = stats.isCharacterDevice() ? 'c' : stats.isBlockDevice() ? 'b' : undefined;
  if (!type) return undefined;
  return { path, type, ...majorMinor(stats.rdev), fileMode: stats.mode & 0o7777, uid: stats.uid, gid: stats.gid, access };
}

/** `--device HOST:CONTAINER:ACCESS`: the host node (symlinks followed, as Docker) as CONTAINER. */
export function hostDevice(hostPath: string, containerPath: string, access: string): DeviceNode {
  let stats: Stats;
  try {
    stats = statSync(hostPath);
  } catch (error) {
    throw new ConveyorError('ERR_USAGE', `--device ${hostPath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const node = nodeOf(stats, containerPath, access);
  if (!node) throw new ConveyorError('ERR_USAGE', `--device ${hostPath}: not a device node`, { hint: 'give a character or block device, e.g. /dev/fuse' });
  return node;
}

/** What runc's HostDevices skips: other mounts' contents and the host's console. */
const SKIPPED = new Set(['/dev/pts', '/dev/shm', '/dev/fd', '/dev/mqueue', '/dev/.lxc', '/dev/.lxd-mounts', '/dev/.udev', '/dev/console']);

/** Every device node under /dev (--privileged gives them all, as Docker). */
export function hostDevices(dir = '/dev'): DeviceNode[] {
  const found: DeviceNode[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return found;
  }
  for (const name of names.sort()) {
    const path = join(dir, name);
    if (SKIPPED.has(path)) continue;
    let stats: Stats;
    try {
      stats = lstatSync(path);
    } catch {
      continue;
    }
    if (stats.isDirectory()) found.push(...hostDevices(path));
    else {
      const node = nodeOf(stats, path, 'rwm');
      if (node) found.push(node);
    }
  }
  return found;
}

/** Whether the host has a default route (IPv4 or IPv6), from /proc/net: no process is started. */
export function hostHasDefaultRoute(): boolean {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  // /proc/net/route: destination and mask 00000000; /proc/net/ipv6_route: destination ::/0, not via lo.
  const v4 = read('/proc/net/route')
    .split('\n')
    .slice(1)
    .some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[1] === '00000000' && fields[7] === '00000000';
    });
  const v6 = read('/proc/net/ipv6_route')
    .split('\n')
    .some((line) => {
      const fields = line.trim().split(/\s+/);
      return fields[0] === '0'.repeat(32) && fields[1] === '00' && fields[9] !== undefined && fields[9] !== 'lo';
    });
  return v4 || v6;
}

/** The first executable `name` on `path` (a PATH value), by looking: no process is started. */
export function findProgram(name: string, path: string | undefined): string | undefined {
  for (const dir of (path ?? '').split(':')) {
    if (!dir.startsWith('/')) continue; // a relative PATH entry would depend on where we run
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
