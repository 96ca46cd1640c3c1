/**
 * ctr-spawn's options and the small parsers behind its flags: volumes, tmpfs
 * mounts, --mount, --cpus, --security-opt, --log-opt, --device, --ulimit,
 * --sysctl, --group-add, --memory-swap, --oom-score-adj, --pid/--ipc/--uts,
 * --add-host. Pure functions except for reading seccomp profiles; no
 * `process`. A bad value is an ERR_USAGE naming the flag (exit 125). Environment entries, env files and
 * the working-directory check are lib-common's (container/env,
 * container/rootfs), shared with ctr-exec.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import { isIP } from '@conveyor/lib-common/ip';
import { parseBytes } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE, type LogLimits } from '@conveyor/lib-common/container/log';
import type { RestartPolicy } from '@conveyor/lib-common/container/state';
import type { OverlayDriver } from '@conveyor/lib-common/overlay/driver';
import type { DockerProfile } from './seccomp.js';
import type { PortMapping } from './ports/publish.js';
import { parseVolumeFlag, volumeEntry } from './volumes.js';
import { PROPAGATIONS, type Limits, type Propagation, type Rlimit, type Tmpfs, type Volume } from './spec.js';

export interface SpawnOptions {
  /** Store root for records without `store`. */
  root: string;
  /** OCI runtime binary (name on PATH or path). */
  runtime: string;
  /** The runtime's own state directory (its --root). */
  runtimeRoot: string;
  /** Rootless: inside the user's namespace (lib-common/rootless; rootless.ts says what changes). */
  rootless?: boolean;
  /** CONVEYOR_OVERLAY_DRIVER: mount the root with this driver and no other. */
  overlayDriver?: OverlayDriver;
  /** Replaces the image Entrypoint; [] clears it (`--entrypoint ''`). */
  entrypoint?: string[];
  /** Words after `--`: replace the image Cmd. */
  command: string[];
  /** KEY=VAL entries from --env-file then -e, already resolved against our environment. */
  env: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  name?: string;
  netHost: boolean;
  readOnly: boolean;
  privileged: boolean;
  /** --security-opt seccomp=unconfined: no seccomp filter. */
  seccompUnconfined: boolean;
  /** --security-opt seccomp=FILE: this profile (Docker's format) instead of Docker's default. */
  seccompProfile?: DockerProfile;
  /** The host architecture (Node's process.arch), for the seccomp filter. */
  arch: string;
  capAdd: string[];
  capDrop: string[];
  volumes: Volume[];
  tmpfs: Tmpfs[];
  limits: Limits;
  interactive: boolean;
  tty: boolean;
  init: boolean;
  keep: boolean;
  /** --rm with -d: the supervisor removes the container when it ends (a foreground run is removed anyway). */
  autoRemove: boolean;
  detach: boolean;
  /** --restart with -d: when the supervisor starts the container again. */
  restart?: RestartPolicy;
  /** --log-opt max-size, max-file: the caps of a detached container's log. */
  log: LogLimits;
  printSpec: boolean;
  /** Run with this edited spec instead of building one. */
  specFile?: string;
  /** --device: host device nodes to give the container. */
  devices?: DeviceRequest[];
  /** --ulimit. */
  ulimits?: Rlimit[];
  /** --sysctl KEY=VALUE. */
  sysctls?: Record<string, string>;
  /** --group-add: group names (resolved in the image's /etc/group) or gids. */
  groupAdd?: string[];
  /** --shm-size in bytes. */
  shmSize?: number;
  oomScoreAdj?: number;
  /** --pid, --ipc, --uts. */
  pid?: NamespaceFlag;
  ipc?: NamespaceFlag;
  uts?: NamespaceFlag;
  /** --security-opt no-new-privileges. */
  noNewPrivileges?: boolean;
  /** --add-host NAME:IP lines for /etc/hosts (IP may be host-gateway). */
  addHosts?: HostEntry[];
  /** -p/--publish: host ports relayed into the container's network namespace (ports/). */
  publish?: PortMapping[];
  /** -P/--publish-all: the image's ExposedPorts on free host ports too. */
  publishAll?: boolean;
  /** --net: the network the container gets (network/). */
  network: NetworkRequest;
  /** --dns, --dns-search, --dns-option: the container's /etc/resolv.conf instead of the host's. */
  dns?: DnsOptions;
}

/**
 * --net after the defaults are applied: a userspace network through an
 * installed helper (its path), only lo, the host's, or another container's.
 */
export type NetworkRequest = { mode: 'pasta' | 'slirp4netns'; program: string } | { mode: 'private' } | { mode: 'host' } | { mode: 'container'; ref: string };

/** --dns, --dns-search, --dns-option. */
export interface DnsOptions {
  servers?: string[];
  search?: string[];
  options?: string[];
}

export interface DeviceRequest {
  hostPath: string;
  containerPath: string;
  /** Some of r, w, m. */
  access: string;
}

/** A namespace flag's value: `container` joins a running container of the store; `none` (--ipc) has no /dev/shm. */
export type NamespaceFlag = { mode: 'private' | 'host' | 'none' } | { mode: 'container'; ref: string };

export interface HostEntry {
  name: string;
  ip: string;
}

function containerPath(path: string, what: string): string {
  if (!path.startsWith('/')) throw new ConveyorError('ERR_USAGE', `${what}: container path must be absolute: ${JSON.stringify(path)}`);
  const clean = posix.normalize(path);
  if (clean === '/') throw new ConveyorError('ERR_USAGE', `${what}: cannot mount over /`);
  return clean.replace(/\/$/, '');
}

/**
 * -v modes: ro/rw, a propagation, and z/Z (SELinux relabelling: accepted, and
 * nothing to do on a host without SELinux, as Docker there).
 */
const VOLUME_MODES = ['ro', 'rw', 'z', 'Z', ...PROPAGATIONS];

/** `-v /host:/ctr[:ro|rw][,rshared|rslave|...][,z|Z]` — bind mounts only; host paths must be absolute. */
export function parseVolume(spec: string): Volume {
  const named = parseVolumeFlag(spec, containerPath);
  if (named) return named;
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) throw new ConveyorError('ERR_USAGE', `-v ${spec}: expected HOST:CONTAINER[:ro|rw]`);
  const [source, destination, mode = 'rw'] = parts;
  if (!isAbsolute(source))
    throw new ConveyorError('ERR_USAGE', `-v ${spec}: host path must be absolute`, { hint: 'a host path is absolute; a volume name has no slash' });
  const flags = mode.split(',');
  const bad = flags.find((f) => !VOLUME_MODES.includes(f));
  if (bad !== undefined)
    throw new ConveyorError('ERR_USAGE', `-v ${spec}: unknown mode ${JSON.stringify(bad)}`, {
      hint: bad === 'nocopy' ? 'nocopy applies to named volumes only' : `modes: ${VOLUME_MODES.join(', ')}`,
    });
  if (flags.includes('ro') && flags.includes('rw')) throw new ConveyorError('ERR_USAGE', `-v ${spec}: ro and rw contradict each other`);
  const propagation = flags.filter((f): f is Propagation => (PROPAGATIONS as readonly string[]).includes(f));
  if (propagation.length > 1) throw new ConveyorError('ERR_USAGE', `-v ${spec}: more than one propagation mode`);
  return {
    source: posix.normalize(source),
    destination: containerPath(destination, `-v ${spec}`),
    readOnly: flags.includes('ro'),
    ...(propagation.length ? { propagation: propagation[0] } : {}),
  };
}

/** `--tmpfs /path[:opt,opt]`. */
export function parseTmpfs(spec: string): Tmpfs {
  const colon = spec.indexOf(':');
  const path = colon < 0 ? spec : spec.slice(0, colon);
  const options =
    colon < 0
      ? []
      : spec
          .slice(colon + 1)
          .split(',')
          .filter(Boolean);
  for (const option of options) {
    if (!/^[a-z0-9_]+(=[\w.:/-]+)?$/i.test(option)) throw new ConveyorError('ERR_USAGE', `--tmpfs ${spec}: bad option ${JSON.stringify(option)}`);
  }
  return { destination: containerPath(path, `--tmpfs ${spec}`), options };
}

/** `--cpus 1.5`. */
export function parseCpus(raw: string): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > 1024)
    throw new ConveyorError('ERR_USAGE', `--cpus must be a positive number, got ${JSON.stringify(raw)}`);
  return value;
}

/**
 * Parses --security-opt values (`=` or, as older Docker spelled it, `:`):
 * `seccomp=unconfined`, `seccomp=FILE` (a profile in Docker's JSON format),
 * `no-new-privileges[=true|false]`, and, accepted because they hold here
 * already, `label=disable` (no SELinux labels are applied) and
 * `apparmor=unconfined` (no AppArmor profile is applied). Anything else is
 * refused, never ignored.
 */
export function parseSecurityOpts(values: string[]): { seccompUnconfined: boolean; seccompProfileFile?: string; noNewPrivileges: boolean } {
  let seccompUnconfined = false;
  let seccompProfileFile: string | undefined;
  let noNewPrivileges = false;
  for (const value of values) {
    if (/^(label[=:]disable|apparmor[=:]unconfined)$/.test(value)) continue;
    const nnp = /^no-new-privileges(?:[=:](true|false))?$/.exec(value);
    if (nnp) {
      noNewPrivileges = nnp[1] !== 'false';
      continue;
    }
    const match = /^seccomp[=:](.+)$/.exec(value);
    if (!match)
      throw new ConveyorError('ERR_USAGE', `--security-opt ${JSON.stringify(value)} is not supported`, {
        hint: 'supported: seccomp=unconfined, seccomp=PROFILE.json, no-new-privileges[=true|false], label=disable, apparmor=unconfined',
      });
    if (match[1] === 'unconfined') seccompUnconfined = true;
    else seccompProfileFile = match[1];
  }
  if (seccompUnconfined && seccompProfileFile)
    throw new ConveyorError('ERR_USAGE', '--security-opt: seccomp=unconfined and a seccomp profile exclude each other');
  return { seccompUnconfined, seccompProfileFile, noNewPrivileges };
}

/** Reads and checks a `--security-opt seccomp=FILE` profile. */
export async function loadSeccompProfile(path: string): Promise<DockerProfile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConveyorError('ERR_USAGE', `--security-opt seccomp=${path}: ${(error as Error).message}`);
  }
  const { parseProfile } = await import('./seccomp.js');
  return parseProfile(text, path);
}

/**
 * `--log-opt max-size=SIZE` and `--log-opt max-file=N` (Docker's json-file
 * options) into the log's caps; the defaults for what is not given.
 */
export function parseLogOpts(entries: string[]): LogLimits {
  const limits: LogLimits = { maxSize: DEFAULT_LOG_MAX_SIZE, maxFiles: DEFAULT_LOG_MAX_FILES };
  for (const entry of entries) {
    const at = entry.indexOf('=');
    const key = at < 0 ? entry : entry.slice(0, at);
    const value = at < 0 ? '' : entry.slice(at + 1);
    if (key === 'max-size') {
      limits.maxSize = parseBytes(value, '--log-opt max-size');
      if (limits.maxSize < 1024) throw new ConveyorError('ERR_USAGE', `--log-opt max-size must be at least 1k, got ${JSON.stringify(value)}`);
    } else if (key === 'max-file') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 100)
        throw new ConveyorError('ERR_USAGE', `--log-opt max-file must be a whole number from 1 to 100, got ${JSON.stringify(value)}`);
      limits.maxFiles = n;
    } else {
      throw new ConveyorError('ERR_USAGE', `unknown --log-opt ${JSON.stringify(key)}`, { hint: 'max-size=SIZE or max-file=N' });
    }
  }
  return limits;
}

const usage = (message: string, hint?: string) => new ConveyorError('ERR_USAGE', message, hint ? { hint } : undefined);

/**
 * `--device HOST[:CONTAINER][:PERMS]` (PERMS some of r, w, m; default rwm), as
 * Docker's: `--device /dev/fuse`, `--device /dev/sda:/dev/xvda:r`.
 */
export function parseDevice(spec: string): DeviceRequest {
  const parts = spec.split(':');
  if (parts.length > 3) throw usage(`--device ${spec}: expected HOST[:CONTAINER][:PERMS]`);
  const isPerms = (p: string) => /^[rwm]{1,3}$/.test(p) && new Set(p).size === p.length;
  // HOST:PERMS is Docker's too: the second field is permissions when it reads as some.
  const permsSecond = parts.length === 2 && isPerms(parts[1]);
  const hostPath = parts[0];
  const target = permsSecond ? hostPath : (parts[1] ?? hostPath);
  const access = (permsSecond ? parts[1] : parts[2]) ?? 'rwm';
  if (!isPerms(access)) throw usage(`--device ${spec}: bad permissions ${JSON.stringify(access)}`, 'some of r, w, m: rwm');
  if (!hostPath.startsWith('/')) throw usage(`--device ${spec}: the host path must be absolute`);
  return { hostPath: posix.normalize(hostPath), containerPath: containerPath(target, `--device ${spec}`), access };
}

/** --ulimit names, Docker's (go-units), to the OCI rlimit types. */
export const ULIMITS: Record<string, string> = {
  as: 'RLIMIT_AS',
  core: 'RLIMIT_CORE',
  cpu: 'RLIMIT_CPU',
  data: 'RLIMIT_DATA',
  fsize: 'RLIMIT_FSIZE',
  locks: 'RLIMIT_LOCKS',
  memlock: 'RLIMIT_MEMLOCK',
  msgqueue: 'RLIMIT_MSGQUEUE',
  nice: 'RLIMIT_NICE',
  nofile: 'RLIMIT_NOFILE',
  nproc: 'RLIMIT_NPROC',
  rss: 'RLIMIT_RSS',
  rtprio: 'RLIMIT_RTPRIO',
  rttime: 'RLIMIT_RTTIME',
  sigpending: 'RLIMIT_SIGPENDING',
  stack: 'RLIMIT_STACK',
};

/** `--ulimit NAME=SOFT[:HARD]` (HARD defaults to SOFT). */
export function parseUlimit(spec: string): Rlimit {
  const match = /^([a-z]+)=(\d+)(?::(\d+))?$/.exec(spec);
  if (!match) throw usage(`--ulimit ${spec}: expected NAME=SOFT[:HARD] with whole numbers`, 'e.g. --ulimit nofile=1024:4096 (unlimited is not supported)');
  const type = ULIMITS[match[1]];
  if (!type) throw usage(`--ulimit ${spec}: unknown limit ${JSON.stringify(match[1])}`, `one of ${Object.keys(ULIMITS).join(', ')}`);
  const soft = Number(match[2]);
  const hard = match[3] === undefined ? soft : Number(match[3]);
  if (!Number.isSafeInteger(soft) || !Number.isSafeInteger(hard)) throw usage(`--ulimit ${spec}: value too large`);
  if (soft > hard) throw usage(`--ulimit ${spec}: the soft limit must not exceed the hard limit`);
  return { type, soft, hard };
}

/** The namespaces a --sysctl can be in, as Docker's validation (opts.ValidateSysctl). */
const IPC_SYSCTLS = [
  'kernel.msgmax',
  'kernel.msgmnb',
  'kernel.msgmni',
  'kernel.sem',
  'kernel.shmall',
  'kernel.shmmax',
  'kernel.shmmni',
  'kernel.shm_rmid_forced',
];

/**
 * `--sysctl KEY=VALUE`: only namespaced ones, and only in a namespace the
 * container owns (net.* not with --net host, IPC ones not with --ipc host,
 * kernel.domainname not with --uts host): a sysctl of the host's is refused.
 */
export function parseSysctl(spec: string, shared: { net: boolean; ipc: boolean; uts: boolean }): [string, string] {
  const at = spec.indexOf('=');
  const key = at < 0 ? spec : spec.slice(0, at);
  const value = at < 0 ? '' : spec.slice(at + 1);
  if (at < 0 || !/^[a-z0-9_]+(\.[a-zA-Z0-9_/-]+)+$/.test(key) || value === '' || /[\n\0]/.test(value)) {
    throw usage(`--sysctl ${spec}: expected KEY=VALUE`, 'e.g. --sysctl net.ipv4.ip_forward=1');
  }
  const owns = (namespaceShared: boolean, what: string) => {
    if (namespaceShared) throw usage(`--sysctl ${key}: not allowed with the host's ${what} namespace`);
  };
  if (IPC_SYSCTLS.includes(key) || key.startsWith('fs.mqueue.')) owns(shared.ipc, 'IPC');
  else if (key.startsWith('net.')) owns(shared.net, 'network');
  else if (key === 'kernel.domainname') owns(shared.uts, 'UTS');
  else throw usage(`--sysctl ${key}: not a namespaced sysctl`, 'allowed: net.*, fs.mqueue.*, kernel.domainname and the IPC kernel.msg*/sem/shm* ones');
  return [key, value];
}

/** `--group-add GROUP`: a gid or a group name (looked up in the image). */
export function parseGroupAdd(value: string): string {
  if (/^\d+$/.test(value) ? Number(value) > 4294967294 : !/^[a-zA-Z_][a-zA-Z0-9_.-]*\$?$/.test(value)) {
    throw usage(`--group-add ${JSON.stringify(value)}: not a group name or gid`);
  }
  return value;
}

/** `--shm-size SIZE`: /dev/shm's size. */
export function parseShmSize(raw: string): number {
  const bytes = parseBytes(raw, '--shm-size');
  if (bytes < 1024) throw usage(`--shm-size must be at least 1k, got ${JSON.stringify(raw)}`);
  return bytes;
}

/** `--memory-swap SIZE|-1`: memory plus swap, at least --memory (which it needs), -1 unlimited. */
export function parseMemorySwap(raw: string, memory: number | undefined): number {
  if (memory === undefined) throw usage('--memory-swap needs --memory', 'Docker: always set the memory limit when using a memory-swap limit');
  if (raw === '-1') return -1;
  const bytes = parseBytes(raw, '--memory-swap');
  if (bytes < memory) throw usage(`--memory-swap (${raw}) must be at least --memory`, 'it is memory plus swap; -1 for unlimited swap');
  return bytes;
}

/** `--oom-score-adj N`, -1000 to 1000. */
export function parseOomScoreAdj(raw: string): number {
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw) || n < -1000 || n > 1000) throw usage(`--oom-score-adj must be a whole number from -1000 to 1000, got ${JSON.stringify(raw)}`);
  return n;
}

/**
 * `--pid`, `--ipc`, `--uts` values: host, container:NAME|ID (--pid, --ipc),
 * private (and for --ipc Docker's shareable, the same here: any container's
 * IPC namespace can be joined, and none: no /dev/shm).
 */
export function parseNamespaceFlag(flag: 'pid' | 'ipc' | 'uts', raw: string): NamespaceFlag {
  if (raw === 'host') return { mode: 'host' };
  if (raw === '' || raw === 'private' || (flag === 'ipc' && raw === 'shareable')) return { mode: 'private' };
  if (flag === 'ipc' && raw === 'none') return { mode: 'none' };
  const joined = /^container:(.+)$/.exec(raw);
  if (joined && flag !== 'uts') return { mode: 'container', ref: joined[1] };
  const modes = { pid: 'host, private, container:NAME', ipc: 'host, private, shareable, none, container:NAME', uts: 'host, private' }[flag];
  throw usage(`--${flag} ${JSON.stringify(raw)}: unknown mode`, `one of ${modes}`);
}

/** `--add-host NAME:IP` (or NAME=IP): a line for the container's /etc/hosts. */
export function parseAddHost(spec: string): HostEntry {
  const at = spec.search(/[:=]/);
  const name = at < 0 ? spec : spec.slice(0, at);
  const ip = at < 0 ? '' : spec.slice(at + 1).replace(/^\[(.*)\]$/, '$1');
  if (!/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,252}[a-zA-Z0-9])?$/.test(name)) throw usage(`--add-host ${spec}: bad host name ${JSON.stringify(name)}`);
  // The gateway that reaches the host's loopback, resolved once the network is up (network/names.ts).
  if (ip === 'host-gateway') return { name, ip };
  if (isIP(ip) === 0) throw usage(`--add-host ${spec}: bad IP address ${JSON.stringify(ip)}`, 'NAME:IP, e.g. db:10.0.0.5');
  return { name, ip };
}

/** The userspace network helpers, preferred first. */
export const NETWORK_HELPERS = ['pasta', 'slirp4netns'] as const;

/**
 * --net / --network: slirp (pasta, else slirp4netns), pasta or slirp4netns
 * by name, private (none is its Docker name: only lo), host, container:ID|NAME.
 * Absent, bridge or default: slirp when a helper is installed, private
 * otherwise. `find` looks a program up on PATH (no process is started);
 * `hostRouted` tells whether the host has a default route: pasta copies the
 * host's routable interface and cannot start without one (an offline host),
 * so slirp chooses slirp4netns there.
 */
export function parseNet(raw: string | undefined, find: (program: string) => string | undefined, hostRouted: () => boolean = () => true): NetworkRequest {
  const value = raw ?? 'default';
  if (value === 'private' || value === 'none') return { mode: 'private' };
  if (value === 'host') return { mode: 'host' };
  const joined = /^container:(.*)$/.exec(value);
  if (joined) {
    if (joined[1] === '') throw usage('--network container: needs a container id or name', 'e.g. --net container:web');
    return { mode: 'container', ref: joined[1] };
  }
  const wanted: readonly (typeof NETWORK_HELPERS)[number][] | undefined =
    value === 'pasta' || value === 'slirp4netns' ? [value] : value === 'slirp' || value === 'bridge' || value === 'default' ? NETWORK_HELPERS : undefined;
  if (!wanted)
    throw usage(`--network ${JSON.stringify(value)}: unknown mode`, 'one of slirp (default), pasta, slirp4netns, private (none), host, container:NAME|ID');
  const usable = wanted.length > 1 && !hostRouted() ? wanted.filter((helper) => helper !== 'pasta') : wanted;
  for (const helper of usable) {
    const program = find(helper);
    if (program) return { mode: helper, program };
  }
  // By default a host without a helper runs containers with only lo, as before; asked for by name, it is an error.
  if (value === 'bridge' || value === 'default') return { mode: 'private' };
  if (usable.length < wanted.length)
    throw usage(
      `--network ${value}: pasta needs a default route on the host (there is none) and slirp4netns is not installed`,
      'install slirp4netns, or use --net private',
    );
  throw usage(`--network ${value}: ${wanted.join(' or ')} is not installed`, 'install passt (pasta) or slirp4netns, or use --net private');
}

/** `--dns IP`, `--dns-search DOMAIN`, `--dns-option OPT` (Docker's; --dns-search . means none). */
export function parseDnsFlags(servers: string[], search: string[], options: string[]): DnsOptions | undefined {
  for (const server of servers) if (isIP(server) === 0) throw usage(`--dns ${JSON.stringify(server)}: not an IP address`);
  for (const domain of search)
    if (domain !== '.' && !/^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,252})$/.test(domain)) throw usage(`--dns-search ${JSON.stringify(domain)}: not a domain name`);
  for (const option of options)
    if (!/^[a-zA-Z0-9_-]+(:[a-zA-Z0-9_.-]+)?$/.test(option))
      throw usage(`--dns-option ${JSON.stringify(option)}: not a resolver option`, 'e.g. ndots:2, edns0');
  if (servers.length + search.length + options.length === 0) return undefined;
  return { ...(servers.length ? { servers } : {}), ...(search.length ? { search } : {}), ...(options.length ? { options } : {}) };
}

/**
 * Docker's checks of the network flags together: with container:X the
 * network, its names and ports are X's (--hostname, --add-host, --dns*, -p
 * refused); host-gateway needs a gateway (a userspace network, or the host's
 * own network where it is 127.0.0.1).
 */
export function checkNetworkFlags(network: NetworkRequest, given: { hostname: boolean; addHosts: HostEntry[]; dns: boolean; publish: boolean }): void {
  if (network.mode === 'container') {
    const conflict = given.hostname ? '--hostname' : given.addHosts.length ? '--add-host' : given.dns ? '--dns' : given.publish ? '-p/-P' : undefined;
    if (conflict) throw usage(`${conflict} conflicts with --net container:`, "the joined container's network, names and ports are used");
  }
  const gateway = given.addHosts.find((h) => h.ip === 'host-gateway');
  if (gateway && network.mode === 'private')
    throw usage(`--add-host ${gateway.name}:host-gateway needs a network`, 'a private network has only lo: use --net slirp (pasta or slirp4netns) or host');
}

/**
 * `--mount type=bind|volume|tmpfs,...` (Docker's keys): src/source, dst/destination/
 * target, readonly/ro[=true|false], bind-propagation, tmpfs-size,
 * tmpfs-mode, volume-nocopy. A bind's source must exist (unlike -v, --mount
 * creates none); a volume's src is its name (none: a new anonymous one).
 */
export function parseMount(spec: string): { bind: Volume } | { tmpfs: Tmpfs } {
  const fields = new Map<string, string>();
  for (const part of spec.split(',')) {
    const at = part.indexOf('=');
    const key = (at < 0 ? part : part.slice(0, at)).trim().toLowerCase();
    if (key === '') throw usage(`--mount ${spec}: empty field`);
    if (fields.has(key)) throw usage(`--mount ${spec}: ${key} given twice`);
    fields.set(key, at < 0 ? '' : part.slice(at + 1));
  }
  const pick = (...names: string[]) => {
    const found = names.filter((n) => fields.has(n));
    if (found.length > 1) throw usage(`--mount ${spec}: ${found.join(' and ')} both given`);
    const value = found.length ? fields.get(found[0]) : undefined;
    for (const n of names) fields.delete(n);
    return value;
  };
  const type = pick('type') ?? 'volume';
  if (type !== 'bind' && type !== 'tmpfs' && type !== 'volume') throw usage(`--mount ${spec}: unknown type ${JSON.stringify(type)}`, 'bind, volume or tmpfs');
  const source = pick('source', 'src');
  const destination = pick('destination', 'dst', 'target');
  const readonlyRaw = pick('readonly', 'ro');
  if (readonlyRaw !== undefined && !['', 'true', 'false', '1', '0'].includes(readonlyRaw)) throw usage(`--mount ${spec}: readonly must be true or false`);
  const readOnly = readonlyRaw !== undefined && readonlyRaw !== 'false' && readonlyRaw !== '0';
  if (destination === undefined || destination === '') throw usage(`--mount ${spec}: no destination (dst=)`);
  const where = `--mount ${spec}`;
  if (type === 'volume') {
    // A volume rides with the binds: attachVolumes gives it its source. No src: a new anonymous one.
    const noCopy = pick('volume-nocopy');
    rejectRest(fields, where);
    return { bind: volumeEntry(source ?? '', containerPath(destination, where), { readOnly, noCopy: noCopy !== undefined && noCopy !== 'false', where }) };
  }
  if (type === 'bind') {
    const propagation = pick('bind-propagation');
    if (source === undefined || !isAbsolute(source)) throw usage(`${where}: a bind needs an absolute source (src=)`);
    if (propagation !== undefined && !(PROPAGATIONS as readonly string[]).includes(propagation))
      throw usage(`${where}: unknown bind-propagation ${JSON.stringify(propagation)}`, PROPAGATIONS.join(', '));
    rejectRest(fields, where);
    return {
      bind: {
        source: posix.normalize(source),
        destination: containerPath(destination, where),
        readOnly,
        mustExist: true,
        ...(propagation ? { propagation: propagation as Propagation } : {}),
      },
    };
  }
  if (source !== undefined) throw usage(`${where}: a tmpfs takes no source`);
  const options: string[] = readOnly ? ['ro'] : [];
  const size = pick('tmpfs-size');
  if (size !== undefined) options.push(`size=${Math.max(1, Math.floor(parseBytes(size, `${where} tmpfs-size`) / 1024))}k`);
  const mode = pick('tmpfs-mode');
  if (mode !== undefined) {
    if (!/^[0-7]{1,4}$/.test(mode)) throw usage(`${where}: tmpfs-mode must be octal, e.g. 1770`);
    options.push(`mode=${mode}`);
  }
  rejectRest(fields, where);
  return { tmpfs: { destination: containerPath(destination, where), options } };
}

function rejectRest(fields: Map<string, string>, where: string): void {
  const [first] = fields.keys();
  if (first !== undefined) throw usage(`${where}: unsupported field ${JSON.stringify(first)}`);
}

/**
 * The Docker run flags of issue 11 from parsed arguments (`multiple` ones as
 * arrays), validated together: a --sysctl must be in a namespace the
 * container owns, --memory-swap needs --memory. `mounts` come from --mount.
 */
export function parseDockerRunFlags(
  args: Record<string, unknown>,
  context: { memory?: number; netHost: boolean },
): Pick<SpawnOptions, 'devices' | 'ulimits' | 'sysctls' | 'groupAdd' | 'shmSize' | 'oomScoreAdj' | 'pid' | 'ipc' | 'uts' | 'addHosts'> & {
  memorySwap?: number;
  volumes: Volume[];
  tmpfs: Tmpfs[];
} {
  const list = (name: string) => (Array.isArray(args[name]) ? (args[name] as string[]) : []);
  const one = (name: string) => (typeof args[name] === 'string' ? (args[name] as string) : undefined);
  const pid = one('pid') === undefined ? undefined : parseNamespaceFlag('pid', one('pid')!);
  const ipc = one('ipc') === undefined ? undefined : parseNamespaceFlag('ipc', one('ipc')!);
  const uts = one('uts') === undefined ? undefined : parseNamespaceFlag('uts', one('uts')!);
  const shared = { net: context.netHost, ipc: ipc?.mode === 'host' || ipc?.mode === 'container', uts: uts?.mode === 'host' };
  const mounts = list('mount').map(parseMount);
  const ulimits = list('ulimit').map(parseUlimit);
  const duplicate = ulimits.find((u, i) => ulimits.findIndex((v) => v.type === u.type) !== i);
  if (duplicate) throw usage(`--ulimit: ${duplicate.type} given twice`);
  return {
    devices: list('device').map(parseDevice),
    ulimits,
    sysctls: Object.fromEntries(list('sysctl').map((s) => parseSysctl(s, shared))),
    groupAdd: list('group-add').map(parseGroupAdd),
    shmSize: one('shm-size') === undefined ? undefined : parseShmSize(one('shm-size')!),
    oomScoreAdj: one('oom-score-adj') === undefined ? undefined : parseOomScoreAdj(one('oom-score-adj')!),
    pid,
    ipc,
    uts,
    addHosts: list('add-host').map(parseAddHost),
    memorySwap: one('memory-swap') === undefined ? undefined : parseMemorySwap(one('memory-swap')!, context.memory),
    volumes: mounts.flatMap((m) => ('bind' in m ? [m.bind] : [])),
    tmpfs: mounts.flatMap((m) => ('tmpfs' in m ? [m.tmpfs] : [])),
  };
}
