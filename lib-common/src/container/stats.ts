/**
 * Resource usage of a running container as docker stats reports it: a sample
 * is its cgroup's counters (cgroup.ts) plus the host's CPU time and the
 * container's network counters, taken at one moment; two samples of the same
 * container make a `stats` record (CPU % needs a time delta). The arithmetic
 * is Docker's: CPU % = container CPU delta / host CPU delta x online CPUs x
 * 100; memory usage leaves out inactive page cache; an unlimited memory limit
 * is the host's memory.
 *
 * Failure: takeSample resolves to undefined when the container's cgroup is
 * gone (it ended); network counters are left out when the container's
 * network namespace cannot be read or is the host's. Never throws.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { RECORD_VERSION } from '../records.js';
import { processAlive } from '../lock.js';
import { type CgroupUsage, readCgroupUsage } from './cgroup.js';
import type { ContainerState } from './state.js';

/** One container's usage over one interval: emitted by ctr-stats (docs/protocol.md, `stats`). */
export interface StatsRecord {
  type: 'stats';
  v: number;
  id: string;
  name?: string;
  /** When the second sample was taken (RFC 3339). */
  time: string;
  /** Share of one CPU over the interval, as docker stats: 100 per fully used CPU. */
  cpuPercent: number;
  /** CPU time used since the container started, nanoseconds. */
  cpuUsageNs: number;
  /** Memory in use, bytes, inactive page cache left out (docker stats' MEM USAGE). */
  memoryUsage: number;
  /** The memory limit, or the host's memory when unlimited. */
  memoryLimit: number;
  memoryPercent: number;
  pids: number;
  blockRead: number;
  blockWrite: number;
  /** Bytes received and sent on the container's own interfaces (loopback left out); absent for --net host or unreadable. */
  netRx?: number;
  netTx?: number;
}

/** Linux's USER_HZ: /proc/stat counts in these ticks. */
const TICKS_PER_SECOND = 100;

export interface HostCpu {
  /** All CPU time of all CPUs since boot, nanoseconds (/proc/stat's cpu line). */
  totalNs: number;
  onlineCpus: number;
}

export interface NetCounters {
  rx: number;
  tx: number;
}

export interface StatsSample {
  usage: CgroupUsage;
  host: HostCpu;
  net?: NetCounters;
}

/** /proc/stat → the host's total CPU time and number of online CPUs. Pure. */
export function parseProcStat(text: string): HostCpu {
  let totalNs = 0;
  let onlineCpus = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('cpu ')) {
      // user nice system idle iowait irq softirq steal (guest time is already inside user)
      const ticks = line.trim().split(/\s+/).slice(1, 9).map(Number);
      totalNs = ticks.reduce((sum, n) => sum + (Number.isFinite(n) ? n : 0), 0) * (1e9 / TICKS_PER_SECOND);
    } else if (/^cpu\d+ /.test(line)) onlineCpus++;
  }
  return { totalNs, onlineCpus: Math.max(onlineCpus, 1) };
}

/** /proc/<pid>/net/dev → bytes received and sent on every interface but loopback. Pure. */
export function parseNetDev(text: string): NetCounters {
  let rx = 0;
  let tx = 0;
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    if (name === 'lo') continue;
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    rx += Number.isFinite(fields[0]) ? fields[0] : 0;
    tx += Number.isFinite(fields[8]) ? fields[8] : 0;
  }
  return { rx, tx };
}

/** The container's network counters, from its init's network namespace; undefined for the host's own or an unreadable one. */
function readNet(state: ContainerState, hostNetNs: string | undefined): NetCounters | undefined {
  const pid = state.pid;
  if (!pid || !processAlive(pid, state.pidStartTime)) return undefined;
  try {
    // --net host: the counters would be the host's, which docker stats does not show either.
    if (readlinkSync(`/proc/${pid}/ns/net`) === hostNetNs) return undefined;
    return parseNetDev(readFileSync(`/proc/${pid}/net/dev`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Our own network namespace, to tell a --net host container from one with its own. */
export function hostNetNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/net');
  } catch {
    return undefined;
  }
}

/** One sample of a container now; undefined when its cgroup is gone. */
export function takeSample(state: ContainerState, hostNetNs = hostNetNamespace()): StatsSample | undefined {
  const usage = typeof state.cgroupsPath === 'string' ? readCgroupUsage(state.cgroupsPath) : undefined;
  if (!usage) return undefined;
  let host: HostCpu;
  try {
    host = parseProcStat(readFileSync('/proc/stat', 'utf8'));
  } catch {
    host = { totalNs: 0, onlineCpus: 1 };
  }
  return { usage, host, net: readNet(state, hostNetNs) };
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/**
 * The `stats` record of a container from two samples, `before` then `now`.
 * `hostMemory` stands in for an unlimited memory limit. Pure.
 */
export function statsRecord(container: { id: string; name?: string }, before: StatsSample, now: StatsSample, hostMemory: number, time: Date): StatsRecord {
  const cpuDelta = (now.usage.cpuUsageNs ?? 0) - (before.usage.cpuUsageNs ?? 0);
  const systemDelta = now.host.totalNs - before.host.totalNs;
  const cpuPercent = cpuDelta > 0 && systemDelta > 0 ? (cpuDelta / systemDelta) * now.host.onlineCpus * 100 : 0;
  const raw = now.usage.memoryUsage ?? 0;
  const inactive = now.usage.memoryInactiveFile ?? 0;
  const memoryUsage = inactive < raw ? raw - inactive : raw;
  const memoryLimit = now.usage.memoryLimit !== undefined ? Math.min(now.usage.memoryLimit, hostMemory) : hostMemory;
  return {
    type: 'stats',
    v: RECORD_VERSION,
    id: container.id,
    ...(container.name ? { name: container.name } : {}),
    time: time.toISOString(),
    cpuPercent: round2(cpuPercent),
    cpuUsageNs: now.usage.cpuUsageNs ?? 0,
    memoryUsage,
    memoryLimit,
    memoryPercent: memoryLimit > 0 ? round2((memoryUsage / memoryLimit) * 100) : 0,
    pids: now.usage.pids ?? 0,
    blockRead: now.usage.blockRead ?? 0,
    blockWrite: now.usage.blockWrite ?? 0,
    ...(now.net ? { netRx: now.net.rx, netTx: now.net.tx } : {}),
  };
}
