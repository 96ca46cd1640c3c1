/**
 * The image config + flags → OCI runtime spec (config.json) translation.
 * Pure: every input is resolved beforehand (user, env, host facts), so the
 * same inputs always give the same spec, and tests can check it without runc.
 * Defaults follow Docker's (moby oci/defaults.go): capability set, masked and
 * read-only /proc paths, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys read-only.
 */
import type { ResolvedUser } from '@conveyor/lib-common/container/user';

/** Docker's default capabilities. */
export const DEFAULT_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** Every capability by number (include/uapi/linux/capability.h). */
export const ALL_CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/interrupts',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Files ctr-spawn bind-mounts into /etc: read-only with --read-only, as Docker does. */
export const ETC_FILES = ['/etc/hosts', '/etc/hostname', '/etc/resolv.conf'];

function readOnly(mount: Mount): Mount {
  const options = (mount.options ?? []).filter((o) => o !== 'rw' && o !== 'ro');
  const at = options.indexOf('rbind') + 1;
  return { ...mount, options: [...options.slice(0, at), 'ro', ...options.slice(at)] };
}

export interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface Volume {
  source: string;
  destination: string;
  readOnly: boolean;
}

export interface Tmpfs {
  destination: string;
  options: string[];
}

export interface Limits {
  /** Bytes. */
  memory?: number;
  /** Whether the host can limit swap (v1 memsw files present, or v2). */
  swapLimit?: boolean;
  /** CPUs, fractional. */
  cpus?: number;
  pids?: number;
}

export interface SpecInput {
  rootfs: string;
  readOnlyRoot: boolean;
  args: string[];
  env: string[];
  cwd: string;
  user: ResolvedUser;
  hostname: string;
  terminal: boolean;
  /** Capabilities after --cap-add/--cap-drop (or all, with --privileged). */
  capabilities: string[];
  privileged: boolean;
  netHost: boolean;
  volumes: Volume[];
  tmpfs: Tmpfs[];
  /** Extra bind mounts we add ourselves (/etc/hosts, the init binary). */
  extraMounts: Mount[];
  limits: Limits;
  cgroupsPath: string;
  /** RLIMIT_NOFILE soft/hard: never above the host's hard limit. */
  nofile: number;
  annotations?: Record<string, string>;
  /** `linux.seccomp`, or undefined for none (--privileged, --security-opt seccomp=unconfined). */
  seccomp?: Record<string, unknown>;
}

/** Applies --cap-add and --cap-drop (names with or without CAP_, or ALL) to a base set. */
export function applyCaps(base: string[], add: string[], drop: string[], available: string[]): string[] {
  const norm = (name: string) => {
    const upper = name.trim().toUpperCase();
    return upper === 'ALL' ? 'ALL' : upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  };
  let caps = new Set(base);
  for (const raw of drop.map(norm)) {
    if (raw === 'ALL') caps = new Set();
    else caps.delete(raw);
  }
  for (const raw of add.map(norm)) {
    if (raw === 'ALL') for (const c of available) caps.add(c);
    else caps.add(raw);
  }
  return ALL_CAPS.filter((c) => caps.has(c)).concat([...caps].filter((c) => !ALL_CAPS.includes(c)));
}

export function buildSpec(input: SpecInput): Record<string, unknown> {
  const caps = input.capabilities;
  const mounts: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', input.privileged ? 'rw' : 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', input.privileged ? 'rw' : 'ro'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    // Docker mounts the files it writes into /etc read-only in a read-only container.
    ...input.extraMounts.map((m) => (input.readOnlyRoot && ETC_FILES.includes(m.destination) ? readOnly(m) : m)),
    ...input.volumes.map((v) => ({ destination: v.destination, type: 'bind', source: v.source, options: ['rbind', 'rprivate', v.readOnly ? 'ro' : 'rw'] })),
    ...input.tmpfs.map((t) => ({ destination: t.destination, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', ...t.options] })),
  ];
  // A cgroup namespace (Docker's default on cgroup v2; on v1 Docker shares the
  // host's): /proc/self/cgroup and the cgroup mount show the container's own
  // cgroup as /, not the host's hierarchy and our cgroup paths.
  const namespaces = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
    { type: 'cgroup' },
    ...(input.netHost ? [] : [{ type: 'network' }]),
  ];
  const resources: Record<string, unknown> = {
    devices: [{ allow: input.privileged, access: 'rwm' }],
  };
  if (input.limits.memory !== undefined) {
    resources.memory = { limit: input.limits.memory, ...(input.limits.swapLimit ? { swap: input.limits.memory } : {}) };
  }
  if (input.limits.cpus !== undefined) {
    const period = 100_000;
    resources.cpu = { quota: Math.max(1000, Math.round(input.limits.cpus * period)), period };
  }
  if (input.limits.pids !== undefined) resources.pids = { limit: input.limits.pids };
  const user: Record<string, unknown> = { uid: input.user.uid, gid: input.user.gid };
  if (input.user.additionalGids.length > 0) user.additionalGids = input.user.additionalGids;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: input.terminal,
      user,
      args: input.args,
      env: input.env,
      cwd: input.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: input.nofile, soft: input.nofile }],
      noNewPrivileges: !input.privileged,
    },
    root: { path: input.rootfs, readonly: input.readOnlyRoot },
    hostname: input.hostname,
    mounts,
    ...(input.annotations ? { annotations: input.annotations } : {}),
    linux: {
      cgroupsPath: input.cgroupsPath,
      resources,
      namespaces,
      ...(input.privileged ? {} : { maskedPaths: MASKED_PATHS, readonlyPaths: READONLY_PATHS }),
      ...(input.seccomp ? { seccomp: input.seccomp } : {}),
    },
  };
}
