/**
 * The image config + flags → OCI runtime spec (config.json) translation.
 * Pure: every input is resolved beforehand (user, env, host facts), so the
 * same inputs always give the same spec, and tests can check it without runc.
 * Defaults follow Docker's (moby oci/defaults.go, daemon/oci_linux.go):
 * capability set, masked and read-only /proc paths, /dev, /dev/pts, /dev/shm,
 * /dev/mqueue, /sys read-only, the primary group among the supplementary ones,
 * no_new_privs off, unprivileged ports and ping open in a private network
 * namespace, mounts ordered parents first, swap as much again as --memory.
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
  /** --mount: the host path must exist (-v creates a missing one, --mount does not, as Docker). */
  mustExist?: boolean;
  /** Mount propagation (-v ...:rshared, --mount bind-propagation=); rprivate when absent, as Docker. */
  propagation?: Propagation;
  /** A volume (volumes.ts) instead of a host path: its name, '' for a new anonymous one; source is set when attached. */
  volume?: string;
  /** nocopy: an empty volume is not seeded from the image. */
  noCopy?: boolean;
}

export const PROPAGATIONS = ['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave'] as const;
export type Propagation = (typeof PROPAGATIONS)[number];

/** A device node given to the container (--device, or every host device with --privileged). */
export interface DeviceNode {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
  /** cgroup access: some of r, w, m. */
  access: string;
}

/** A namespace: the container's own, the host's (none made), or one to join by path (/proc/PID/ns/TYPE). */
export type NamespaceMode = { mode: 'private' } | { mode: 'host' } | { mode: 'join'; path: string };

export interface Rlimit {
  type: string;
  soft: number;
  hard: number;
}

/** Docker's sysctls for a container with its own network namespace (daemon/oci_linux.go WithSysctls). */
export const DEFAULT_NET_SYSCTLS: Record<string, string> = {
  'net.ipv4.ip_unprivileged_port_start': '0',
  'net.ipv4.ping_group_range': '0 2147483647',
};

/** Docker's /dev/shm size. */
export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;

/** Path depth, for Docker's mount order: parents before what they contain. */
function depth(destination: string): number {
  return destination.split('/').filter(Boolean).length;
}

/**
 * Docker's mount order: the defaults (/proc, /dev, ...) first, except those a
 * later mount replaces at the same destination (--tmpfs /dev/shm, -v on
 * /etc/hosts); then the added mounts, parents first (stable), so a volume on
 * /etc does not hide /etc/hosts; the last of the added mounts at one
 * destination wins (the user's over ours).
 */
export function orderMounts(defaults: Mount[], added: Mount[]): Mount[] {
  const last = new Map<string, number>();
  for (const [i, m] of added.entries()) last.set(m.destination, i);
  const kept = added.filter((m, i) => last.get(m.destination) === i);
  const sorted = kept.map((m, i) => ({ m, i })).sort((a, b) => depth(a.m.destination) - depth(b.m.destination) || a.i - b.i);
  return [...defaults.filter((m) => !last.has(m.destination)), ...sorted.map(({ m }) => m)];
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
  /** --memory-swap: memory plus swap in bytes, -1 unlimited; default twice --memory, as Docker. */
  memorySwap?: number;
  /** CPUs, fractional. */
  cpus?: number;
  pids?: number;
}

export interface SpecInput {
  rootfs: string;
  /** The overlay the runtime mounts on "/" itself (record.ts runtimeMount): the first mount. */
  rootMount?: Mount;
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
  /**
   * The network namespace to join (network/: the container's own `netns`
   * file, or another container's); without one, the runtime makes a new one.
   */
  netns?: { path: string; shared: boolean };
  volumes: Volume[];
  tmpfs: Tmpfs[];
  /** Extra bind mounts we add ourselves (/etc/hosts, the init binary). */
  extraMounts: Mount[];
  limits: Limits;
  /** '' for none (rootless without a delegated cgroup: runc's rootless manager then makes none). */
  cgroupsPath: string;
  /** Rootless (rootless.ts): whether gid 5 (tty, devpts's gid=) is mapped, and the highest mapped gid. */
  rootless?: { ttyGroupMapped: boolean; highestGid: number };
  /** RLIMIT_NOFILE soft/hard: never above the host's hard limit. */
  nofile: number;
  annotations?: Record<string, string>;
  /** `linux.seccomp`, or undefined for none (--privileged, --security-opt seccomp=unconfined). */
  seccomp?: Record<string, unknown>;
  /** --security-opt no-new-privileges (Docker's default: off). */
  noNewPrivileges?: boolean;
  /** --sysctl, over Docker's defaults. */
  sysctls?: Record<string, string>;
  /** --device, or the host's devices with --privileged. */
  devices?: DeviceNode[];
  /** --ulimit; RLIMIT_NOFILE from `nofile` unless given here. */
  rlimits?: Rlimit[];
  /** --shm-size in bytes (default 64m). */
  shmSize?: number;
  oomScoreAdj?: number;
  /** --pid, --ipc, --uts (private when absent). */
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
  uts?: NamespaceMode;
  /** --ipc none: no /dev/shm. */
  noShm?: boolean;
  /** --ipc host / container:X: this directory bind-mounted as /dev/shm instead of a tmpfs. */
  shmSource?: string;
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
  const shmSize = input.shmSize ?? DEFAULT_SHM_SIZE;
  const shm: Mount[] = input.noShm
    ? []
    : input.shmSource
      ? [{ destination: '/dev/shm', type: 'bind', source: input.shmSource, options: ['rbind', 'rprivate', 'nosuid', 'noexec', 'nodev'] }]
      : [{ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${Math.floor(shmSize / 1024)}k`] }];
  const defaults: Mount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      // An unmapped gid cannot own the ptys (a single-id mapping has no group 5).
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', ...(input.rootless && !input.rootless.ttyGroupMapped ? [] : ['gid=5'])],
    },
    // Rootless on the host's network: sysfs belongs to the host's network namespace, which the user's namespace may not mount; bind it.
    input.rootless && input.netHost
      ? { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', input.privileged ? 'rw' : 'ro'] }
      : { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', input.privileged ? 'rw' : 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', input.privileged ? 'rw' : 'ro'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    ...shm,
  ];
  const added: Mount[] = [
    // Docker mounts the files it writes into /etc read-only in a read-only container.
    ...input.extraMounts.map((m) => (input.readOnlyRoot && ETC_FILES.includes(m.destination) ? readOnly(m) : m)),
    ...input.volumes.map((v) => ({
      destination: v.destination,
      type: 'bind',
      source: v.source,
      options: ['rbind', v.propagation ?? 'rprivate', v.readOnly ? 'ro' : 'rw'],
    })),
    ...input.tmpfs.map((t) => ({ destination: t.destination, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'noexec', ...t.options] })),
  ];
  const ordered = orderMounts(defaults, added);
  // First: runc mounts a mount on "/" onto root.path before the others, which then land in it.
  const mounts = input.rootMount ? [input.rootMount, ...ordered] : ordered;
  // A cgroup namespace (Docker's default on cgroup v2; on v1 Docker shares the
  // host's): /proc/self/cgroup and the cgroup mount show the container's own
  // cgroup as /, not the host's hierarchy and our cgroup paths.
  const namespace = (type: string, mode: NamespaceMode = { mode: 'private' }) =>
    mode.mode === 'host' ? [] : mode.mode === 'join' ? [{ type, path: mode.path }] : [{ type }];
  const namespaces = [
    ...namespace('pid', input.pid),
    ...namespace('ipc', input.ipc),
    ...namespace('uts', input.uts),
    { type: 'mount' },
    { type: 'cgroup' },
    ...(input.netHost ? [] : [input.netns ? { type: 'network', path: input.netns.path } : { type: 'network' }]),
  ];
  const devices = input.devices ?? [];
  const resources: Record<string, unknown> = {
    devices: [
      { allow: input.privileged, access: 'rwm' },
      ...(input.privileged ? [] : devices.map((d) => ({ allow: true, type: d.type, major: d.major, minor: d.minor, access: d.access }))),
    ],
  };
  if (input.limits.memory !== undefined) {
    // OCI's swap is memory plus swap; Docker's default allows as much swap again.
    const swap = input.limits.memorySwap ?? input.limits.memory * 2;
    resources.memory = { limit: input.limits.memory, ...(input.limits.swapLimit ? { swap } : {}) };
  }
  if (input.limits.cpus !== undefined) {
    const period = 100_000;
    resources.cpu = { quota: Math.max(1000, Math.round(input.limits.cpus * period)), period };
  }
  if (input.limits.pids !== undefined) resources.pids = { limit: input.limits.pids };
  // Docker lists the primary group among the supplementary ones (Groups: in /proc/self/status).
  const user = { uid: input.user.uid, gid: input.user.gid, additionalGids: [...new Set([input.user.gid, ...input.user.additionalGids])] };
  const rlimits = [...(input.rlimits ?? [])];
  if (!rlimits.some((r) => r.type === 'RLIMIT_NOFILE')) rlimits.unshift({ type: 'RLIMIT_NOFILE', hard: input.nofile, soft: input.nofile });
  // The network sysctls are the network namespace's: none with the host's or another container's.
  const netSysctls = input.rootless
    ? // The kernel refuses a ping group range that names unmapped groups.
      { ...DEFAULT_NET_SYSCTLS, 'net.ipv4.ping_group_range': `0 ${input.rootless.highestGid}` }
    : DEFAULT_NET_SYSCTLS;
  const sysctl = { ...(input.netHost || input.netns?.shared ? {} : netSysctls), ...(input.sysctls ?? {}) };
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: input.terminal,
      user,
      args: input.args,
      env: input.env,
      cwd: input.cwd,
      capabilities: { bounding: caps, effective: caps, permitted: caps },
      rlimits,
      noNewPrivileges: Boolean(input.noNewPrivileges),
      ...(input.oomScoreAdj !== undefined ? { oomScoreAdj: input.oomScoreAdj } : {}),
    },
    root: { path: input.rootfs, readonly: input.readOnlyRoot },
    // runc refuses a hostname without a UTS namespace of our own.
    ...(input.uts?.mode === 'host' || input.uts?.mode === 'join' ? {} : { hostname: input.hostname }),
    mounts,
    ...(input.annotations ? { annotations: input.annotations } : {}),
    linux: {
      ...(input.cgroupsPath === '' ? {} : { cgroupsPath: input.cgroupsPath }),
      resources,
      namespaces,
      ...(devices.length > 0 ? { devices: devices.map(({ access: _access, ...node }) => node) } : {}),
      ...(Object.keys(sysctl).length > 0 ? { sysctl } : {}),
      ...(rootfsPropagation(input.volumes) ? { rootfsPropagation: rootfsPropagation(input.volumes) } : {}),
      ...(input.privileged ? {} : { maskedPaths: MASKED_PATHS, readonlyPaths: READONLY_PATHS }),
      ...(input.seccomp ? { seccomp: input.seccomp } : {}),
    },
  };
}

/** Docker's rootfs propagation: rshared when a volume shares, rslave when one is a slave, else runc's default. */
function rootfsPropagation(volumes: Volume[]): string | undefined {
  const modes = volumes.map((v) => v.propagation ?? 'rprivate');
  if (modes.some((m) => m === 'shared' || m === 'rshared')) return 'rshared';
  if (modes.some((m) => m === 'slave' || m === 'rslave')) return 'rslave';
  return undefined;
}
