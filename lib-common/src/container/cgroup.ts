/**
 * The cgroups a container's runtime makes under `cgroupsPath` (one directory
 * per v1 hierarchy, or the unified v2 one): finding them, removing what the
 * runtime left, and reading their usage (ctr-stats).
 *
 * Failure: removeCgroups never throws (it returns what it could not remove);
 * the readers return undefined for a file that is missing or unreadable.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
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
  // A rootless container without a delegated cgroup has none ('' in its state): never the hierarchies' roots.
  if (rel === '') return [];
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

/**
 * What a container's cgroup has counted so far, each field read from the
 * first of its directories that has the file: cgroup v2's name first, then
 * v1's. A field is undefined when neither can be read.
 */
export interface CgroupUsage {
  /** CPU time used, nanoseconds (v2 cpu.stat usage_usec, v1 cpuacct.usage). */
  cpuUsageNs?: number;
  /** Memory charged, bytes, page cache included (v2 memory.current, v1 memory.usage_in_bytes). */
  memoryUsage?: number;
  /** Page cache not recently used (v2 inactive_file, v1 total_inactive_file), which docker stats leaves out of usage. */
  memoryInactiveFile?: number;
  /** The memory limit in bytes; undefined when unlimited. */
  memoryLimit?: number;
  pids?: number;
  /** Bytes read from and written to block devices (v2 io.stat rbytes/wbytes, v1 blkio io_service_bytes). */
  blockRead?: number;
  blockWrite?: number;
}

/** A limit at or above this is the kernel's "unlimited" (v1 writes 2^63 rounded down to a page). */
const UNLIMITED = 2 ** 60;

function readFirst(dirs: string[], file: string): string | undefined {
  for (const dir of dirs) {
    try {
      return readFileSync(join(dir, file), 'utf8');
    } catch {
      // not in this hierarchy
    }
  }
  return undefined;
}

function toNumber(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text.trim());
  return text.trim() !== '' && Number.isFinite(value) ? value : undefined;
}

/** `key value` lines (cpu.stat, memory.stat) → the value of `key`. */
export function statField(text: string | undefined, key: string): number | undefined {
  const line = text?.split('\n').find((l) => l.startsWith(`${key} `));
  return line === undefined ? undefined : toNumber(line.slice(key.length + 1));
}

/** v2 io.stat (`8:0 rbytes=1 wbytes=2 ...` per device) summed over devices. */
export function parseIoStat(text: string): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of text.split('\n')) {
    for (const field of line.split(' ').slice(1)) {
      const [key, value] = field.split('=');
      if (key === 'rbytes') read += toNumber(value) ?? 0;
      if (key === 'wbytes') write += toNumber(value) ?? 0;
    }
  }
  return { read, write };
}

/** v1 blkio io_service_bytes (`8:0 Read 4096` per device and operation, then `Total N`) summed over devices. */
export function parseBlkioServiceBytes(text: string): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of text.split('\n')) {
    const [device, op, value] = line.trim().split(/\s+/);
    if (!device || !/^\d+:\d+$/.test(device)) continue;
    if (op === 'Read') read += toNumber(value) ?? 0;
    if (op === 'Write') write += toNumber(value) ?? 0;
  }
  return { read, write };
}

/**
 * Reads a container's usage counters from the cgroup at `cgroupsPath`, v2
 * first, v1 where present. Undefined when the cgroup is gone (the container
 * ended and its runtime removed it).
 */
export function readCgroupUsage(cgroupsPath: string): CgroupUsage | undefined {
  if (cgroupsPath.split('/').includes('..')) return undefined;
  const dirs = cgroupDirs(cgroupsPath);
  if (dirs.length === 0) return undefined;
  const usage: CgroupUsage = {};

  // v1 has a cpu.stat too (throttling counts only): take the first that has usage_usec.
  const usageUsec = dirs.map((dir) => statField(readFirst([dir], 'cpu.stat'), 'usage_usec')).find((v) => v !== undefined);
  usage.cpuUsageNs = usageUsec !== undefined ? usageUsec * 1000 : toNumber(readFirst(dirs, 'cpuacct.usage'));

  const current = toNumber(readFirst(dirs, 'memory.current'));
  const memoryStat = readFirst(dirs, 'memory.stat');
  if (current !== undefined) {
    usage.memoryUsage = current;
    usage.memoryInactiveFile = statField(memoryStat, 'inactive_file');
    const max = readFirst(dirs, 'memory.max')?.trim();
    usage.memoryLimit = max === 'max' ? undefined : toNumber(max);
  } else {
    usage.memoryUsage = toNumber(readFirst(dirs, 'memory.usage_in_bytes'));
    usage.memoryInactiveFile = statField(memoryStat, 'total_inactive_file');
    usage.memoryLimit = toNumber(readFirst(dirs, 'memory.limit_in_bytes'));
  }
  if (usage.memoryLimit !== undefined && usage.memoryLimit >= UNLIMITED) usage.memoryLimit = undefined;

  usage.pids = toNumber(readFirst(dirs, 'pids.current'));

  const ioStat = readFirst(dirs, 'io.stat');
  const blkio =
    ioStat === undefined ? (readFirst(dirs, 'blkio.io_service_bytes_recursive') ?? readFirst(dirs, 'blkio.throttle.io_service_bytes_recursive')) : undefined;
  const io = ioStat !== undefined ? parseIoStat(ioStat) : blkio !== undefined ? parseBlkioServiceBytes(blkio) : undefined;
  usage.blockRead = io?.read;
  usage.blockWrite = io?.write;
  return usage;
}
