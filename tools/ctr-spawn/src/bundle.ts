/**
 * Spec preparation: the OCI runtime spec (config.json) of one container,
 * either translated from the image config and ctr-spawn's options against the
 * mounted rootfs (prepareSpec: command, environment, user resolved in the
 * image's /etc/passwd, working directory, hostname, /etc/hosts, init,
 * capabilities, seccomp, limits), or an edited spec from --spec made to fit
 * this container (adoptSpec). Writes the hostname and hosts files it mounts
 * into the container directory; writeConfig writes config.json.
 *
 * Failure: ERR_USAGE (no command, relative working directory, a --spec file
 * that is not a spec), ERR_USER_NOT_FOUND, ERR_SPAWN_UNSAFE_WORKDIR,
 * ERR_SPAWN_COMMAND_NOT_FOUND / ERR_SPAWN_NOT_EXECUTABLE (checked in the
 * rootfs before the runtime starts, as Docker reports them), ERR_SPAWN_FAILED
 * (--init without tini). Files written before a failure are the container
 * directory's, removed by the run's clean-up. --pid/--ipc container:X need X
 * running (ERR_CONTAINER_NOT_RUNNING, ERR_CONTAINER_NOT_FOUND); --group-add
 * names the image's /etc/group lacks are ERR_USER_NOT_FOUND; a --mount bind
 * source that does not exist or a --device that is no device is ERR_USAGE.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname as hostHostname } from 'node:os';
import { mkdir, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { ContainerPaths, RuntimeRootMount } from '@conveyor/lib-common/overlay/mount';
import type { RootfsRecord } from '@conveyor/lib-common/records';
import { isContainerId, Store } from '@conveyor/lib-common/store';
import { swapLimitSupported } from '@conveyor/lib-common/container/cgroup';
import { boundingCaps, findInit, hostDevice, hostDevices, nofileHardLimit } from './host.js';
import { envValue, mergeEnv } from '@conveyor/lib-common/container/env';
import { checkWorkdir, DEFAULT_PATH, findCommand, mkdirInRoot, readRootFile, type Root } from '@conveyor/lib-common/container/rootfs';
import type { NamespaceFlag, SpawnOptions } from './options.js';
import type { NetworkSetup } from './network/index.js';
import { hostsFile, resolvConf } from './network/names.js';
import { applyCaps, buildSpec, DEFAULT_CAPS, type Mount, type NamespaceMode } from './spec.js';
import { observe, processRuns, resolveContainer } from '@conveyor/lib-common/container/state';
import { parseGroup, type ResolvedUser } from '@conveyor/lib-common/container/user';
import { defaultSeccomp } from './seccomp.js';
import { attachVolumes } from './volumes.js';
import { resolveUser } from '@conveyor/lib-common/container/user';
import { highestMapped, isMapped, readRootlessFacts } from './rootless.js';
import { settleAll } from './settle.js';

/** What the spec needs to know of the user namespace it runs in (rootless.ts). */
function rootlessSpecFacts(): { ttyGroupMapped: boolean; highestGid: number } {
  const { gidMap } = readRootlessFacts();
  return { ttyGroupMapped: isMapped(gidMap, 5), highestGid: highestMapped(gidMap) };
}

/** What of the spec comes from the host and the flags alone: known before the record (hostSpecFacts). */
export interface HostSpecFacts {
  capabilities: string[];
  seccomp: Record<string, unknown> | undefined;
  nofile: number;
}

/** The spec's parts that depend on no record (capabilities, the seccomp filter, the nofile limit); throws what they throw. */
function workOutHostSpecFacts(options: SpawnOptions): HostSpecFacts {
  const available = boundingCaps();
  const capabilities = options.privileged ? available : applyCaps(DEFAULT_CAPS, options.capAdd, options.capDrop, available);
  const seccomp = options.privileged || options.seccompUnconfined ? undefined : defaultSeccomp(capabilities, options.arch, options.seccompProfile);
  return { capabilities, seccomp, nofile: nofileHardLimit() };
}

/**
 * The spec's host parts, which ctr-spawn works out while it waits for the record, off the path
 * after it. Undefined when one fails: prepareSpec then works them out in its place, and its
 * failure is reported there.
 */
export function hostSpecFacts(options: SpawnOptions): HostSpecFacts | undefined {
  try {
    return workOutHostSpecFacts(options);
  } catch {
    return undefined;
  }
}

export interface PreparedSpec {
  spec: Record<string, unknown>;
  hostname: string;
}

function underAny(path: string, mounts: { destination: string }[]): boolean {
  return mounts.some((m) => path === m.destination || path.startsWith(m.destination + '/'));
}

/** The container's own copies of the name files, under these names in its directory. */
export const NAME_FILES = ['hostname', 'hosts', 'resolv.conf'] as const;

/**
 * Writes /etc/hostname, /etc/hosts and /etc/resolv.conf for the container
 * into its directory (network/names.ts); with --net container:X, X's own
 * (as Docker shares them). Resolves to the hostname.
 */
async function writeNameFiles(
  paths: ContainerPaths,
  options: Pick<SpawnOptions, 'addHosts' | 'dns'>,
  network: NetworkSetup,
  hostname: string,
): Promise<string> {
  const joined = network.joined;
  const fromJoined = async (file: string) => (joined ? await readFile(join(joined.dir, file), 'utf8').catch(() => undefined) : undefined);
  const name = (await fromJoined('hostname'))?.trim() || hostname;
  const hosts =
    (await fromJoined('hosts')) ??
    hostsFile({ hostname: name, address: network.address, addHosts: options.addHosts, gateway: network.mode === 'host' ? '127.0.0.1' : network.gateway });
  const resolv =
    (await fromJoined('resolv.conf')) ??
    resolvConf({
      hostText: readHostResolvConf(),
      dns: options.dns ?? {},
      hostNetwork: network.mode === 'host',
      helperDns: network.dns,
    });
  // Synchronous: three small new files, each an open, a write and a close, cost less than their trips through libuv's thread pool.
  writeFileSync(join(paths.containerDir, 'hostname'), `${name}\n`);
  writeFileSync(join(paths.containerDir, 'hosts'), hosts);
  writeFileSync(join(paths.containerDir, 'resolv.conf'), resolv);
  return name;
}

/** The host's /etc/resolv.conf ('' when it cannot be read). */
function readHostResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

/** The namespace a spec's network entry names: the setup's, shared when it is another container's. */
function specNetns(network: NetworkSetup): { path: string; shared: boolean } | undefined {
  return network.netnsPath ? { path: network.netnsPath, shared: network.mode === 'container' } : undefined;
}

/**
 * Resolves the image config and options against the rootfs into a spec: the mounted merged dir, or
 * (`root.runtimeMount`) the layers the runtime will mount as the spec's first mount.
 */
export async function prepareSpec(
  record: Record<string, unknown>,
  paths: ContainerPaths,
  options: SpawnOptions,
  cgroupsPath: string,
  network: NetworkSetup,
  root: { tree: Root; runtimeMount?: RuntimeRootMount } = { tree: paths.merged },
  facts?: HostSpecFacts,
): Promise<PreparedSpec> {
  const config = (record.config && typeof record.config === 'object' ? record.config : {}) as RootfsRecord['config'];
  const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((s) => typeof s === 'string') ? (v as string[]) : undefined);
  // Looked up in: the image's files as the container will see them.
  const rootfs = root.tree;
  const entrypoint = options.entrypoint ?? strings(config.Entrypoint) ?? [];
  const cmd = options.command.length > 0 ? options.command : options.entrypoint !== undefined ? [] : (strings(config.Cmd) ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new ConveyorError('ERR_USAGE', 'no command specified', { hint: 'give one after --, e.g. ctr-spawn -- sh -c "echo hi"' });
  const workdirRaw = options.workdir ?? (typeof config.WorkingDir === 'string' && config.WorkingDir !== '' ? config.WorkingDir : '/');
  if (!workdirRaw.startsWith('/')) throw new ConveyorError('ERR_USAGE', `working directory must be absolute: ${JSON.stringify(workdirRaw)}`);
  const cwd = posix.normalize(workdirRaw);
  const mountsByUser = [...options.volumes, ...options.tmpfs];
  const imageEnv = strings(config.Env) ?? [];
  // PATH as the container's environment will have it (the hostname, known later, is not in it).
  const path = envValue(mergeEnv([`PATH=${DEFAULT_PATH}`], imageEnv, options.env), 'PATH');
  // Lookups in the root and the name files, together; a failure is the first of them in this order, as when they ran in turn.
  const [user, hostname, , lookup] = await settleAll([
    resolveUser(rootfs, options.user ?? (typeof config.User === 'string' ? config.User : '')).then((found) => addGroups(rootfs, found, options.groupAdd ?? [])),
    // --uts host: the host's name, as Docker (the spec then sets none).
    // --net container:X: X's hostname, as Docker.
    writeNameFiles(paths, options, network, options.uts?.mode === 'host' ? hostHostname() : (options.hostname ?? paths.id.slice(0, 12))),
    // A root the runtime mounts gets its working directory from the runtime (runc makes a missing cwd, before a read-only root is made read-only).
    checkWorkdir(rootfs, cwd).then(() => (underAny(cwd, mountsByUser) || typeof rootfs !== 'string' ? undefined : mkdirInRoot(rootfs, cwd))),
    // Exit 126/127 before the runtime starts, as Docker reports them.
    findCommand(rootfs, args[0], path, cwd),
  ]);
  let env = mergeEnv([`PATH=${DEFAULT_PATH}`, `HOSTNAME=${hostname}`], options.tty ? ['TERM=xterm'] : [], imageEnv, options.env);
  if (envValue(env, 'HOME') === undefined) env = [...env, `HOME=${user.home}`];
  if (!underAny(lookup.path, mountsByUser)) {
    if (lookup.status === 'not-found') {
      throw new ConveyorError(
        'ERR_SPAWN_COMMAND_NOT_FOUND',
        `exec: ${JSON.stringify(args[0])}: ${args[0].includes('/') ? 'no such file or directory' : 'executable file not found in $PATH'}`,
        {
          hint: 'check the command and the image',
        },
      );
    }
    if (lookup.status === 'not-executable') {
      throw new ConveyorError('ERR_SPAWN_NOT_EXECUTABLE', `exec: ${JSON.stringify(lookup.path)}: ${lookup.why}`, {
        hint: 'the command must be an executable file',
      });
    }
  }

  // The container's own copies: it may edit them; the host's files are never mounted.
  const extraMounts: Mount[] = NAME_FILES.map((file) => ({
    destination: `/etc/${file}`,
    type: 'bind',
    source: join(paths.containerDir, file),
    options: ['rbind', 'rprivate'],
  }));
  let finalArgs = args;
  if (options.init) {
    const init = findInit();
    if (!init) throw new ConveyorError('ERR_SPAWN_FAILED', '--init needs a static tini', { hint: 'apt-get install tini (provides /usr/bin/tini-static)' });
    extraMounts.push({ destination: '/.conveyor-init', type: 'bind', source: init, options: ['rbind', 'rprivate', 'ro'] });
    finalArgs = ['/.conveyor-init', '--', ...args];
  }
  const store = new Store(join(paths.containerDir, '..', '..'));
  const [, volumes, pid, ipc] = await settleAll([
    // A missing host path is created as a directory, as docker run -v does (--mount refuses);
    // an existing one, a file included, is bound as it is.
    Promise.all(
      options.volumes.map(async (volume) => {
        if (volume.volume !== undefined) return; // a volume's directory is the store's (attachVolumes)
        if (existsSync(volume.source)) return;
        if (volume.mustExist)
          throw new ConveyorError('ERR_USAGE', `--mount: bind source path does not exist: ${volume.source}`, {
            hint: 'create it first, or use -v, which does',
          });
        await mkdir(volume.source, { recursive: true });
      }),
    ),
    // Named volumes, -v /path and the image's VOLUMEs no other mount covers, as bind mounts of volume dirs.
    attachVolumes(store, {
      id: paths.id,
      // Seeding copies from a mounted root (record.ts hostMountReason: never with a root the runtime mounts).
      rootfs: paths.merged,
      volumes: options.volumes,
      imageVolumes: config.Volumes,
      otherTargets: options.tmpfs.map((t) => t.destination),
    }),
    namespaceOf(store, 'pid', options.pid),
    namespaceOf(store, 'ipc', options.ipc),
  ]);
  // --ipc host: the host's /dev/shm too. A joined container's /dev/shm is a tmpfs of
  // its own mount namespace, which the kernel does not let another bind-mount: the
  // joiner shares System V IPC and message queues, not /dev/shm.
  const shmSource = ipc.mode === 'host' ? '/dev/shm' : undefined;
  const devices = options.privileged ? hostDevices() : (options.devices ?? []).map((d) => hostDevice(d.hostPath, d.containerPath, d.access));
  // Worked out here when they were not before the record (or failed then): a failure is thrown in its place.
  const host = facts ?? workOutHostSpecFacts(options);
  const { capabilities } = host;
  const spec = buildSpec({
    rootfs: paths.merged,
    rootMount: root.runtimeMount,
    readOnlyRoot: options.readOnly,
    args: finalArgs,
    env,
    cwd,
    user,
    hostname,
    terminal: options.tty,
    capabilities,
    privileged: options.privileged,
    netHost: options.netHost,
    netns: specNetns(network),
    volumes,
    tmpfs: options.tmpfs,
    extraMounts,
    limits: { ...options.limits, swapLimit: options.limits.memory !== undefined && swapLimitSupported() },
    cgroupsPath,
    rootless: options.rootless ? rootlessSpecFacts() : undefined,
    nofile: host.nofile,
    noNewPrivileges: options.noNewPrivileges,
    sysctls: options.sysctls,
    devices,
    rlimits: options.ulimits,
    shmSize: options.shmSize,
    oomScoreAdj: options.oomScoreAdj,
    pid,
    ipc,
    uts: options.uts?.mode === 'host' ? { mode: 'host' } : { mode: 'private' },
    noShm: options.ipc?.mode === 'none',
    shmSource,
    seccomp: host.seccomp,
    annotations: {
      'org.opencontainers.image.ref.name': typeof record.ref === 'string' ? record.ref : '',
      'org.opencontainers.image.digest': typeof record.digest === 'string' ? record.digest : '',
      ...(options.name ? { 'io.conveyor.container.name': options.name } : {}),
    },
  });
  return { spec, hostname };
}

/**
 * Makes an edited spec (from --print-spec of another run) fit this container:
 * its root, cgroup and the files of the other container's directory
 * (/etc/hostname, /etc/hosts) point at this one's.
 */
export async function adoptSpec(
  spec: Record<string, unknown>,
  paths: ContainerPaths,
  store: Store,
  cgroupsPath: string,
  options: Pick<SpawnOptions, 'addHosts' | 'dns'>,
  network: NetworkSetup,
): Promise<Record<string, unknown>> {
  await writeNameFiles(paths, options, network, typeof spec.hostname === 'string' ? spec.hostname : paths.id.slice(0, 12));
  const mounts = Array.isArray(spec.mounts) ? (spec.mounts as Mount[]) : [];
  const linux = (spec.linux ?? {}) as { namespaces?: { type: string; path?: string }[] };
  // The network is this run's (--net), not the one of the run that printed the spec: its namespace is gone or someone else's.
  const namespaces = (linux.namespaces ?? []).filter((n) => n.type !== 'network');
  const netns = specNetns(network);
  if (network.mode !== 'host') namespaces.push(netns ? { type: 'network', path: netns.path } : { type: 'network' });
  return {
    ...spec,
    root: { ...((spec.root as object) ?? {}), path: paths.merged },
    mounts: mounts.map((m) => {
      const file = typeof m.source === 'string' ? containerFile(store, m.source) : undefined;
      return file ? { ...m, source: join(paths.containerDir, file) } : m;
    }),
    linux: { ...linux, namespaces, cgroupsPath: cgroupsPath === '' ? undefined : cgroupsPath },
  };
}

/** `hostname` or `hosts` when `source` is that file of a container directory of the store. */
function containerFile(store: Store, source: string): string | undefined {
  if (!source.startsWith(`${store.containersDir}/`)) return undefined;
  const parts = source.slice(store.containersDir.length + 1).split('/');
  return parts.length === 2 && isContainerId(parts[0]) && (NAME_FILES as readonly string[]).includes(parts[1]) ? parts[1] : undefined;
}

/** --group-add: gids as given, names looked up in the image's /etc/group (as Docker). */
async function addGroups(rootfs: Root, user: ResolvedUser, groupAdd: string[]): Promise<ResolvedUser> {
  if (groupAdd.length === 0) return user;
  const groups = groupAdd.some((g) => !/^\d+$/.test(g)) ? parseGroup((await readRootFile(rootfs, '/etc/group')) ?? '') : [];
  const gids = groupAdd.map((name) => {
    if (/^\d+$/.test(name)) return Number(name);
    const group = groups.find((g) => g.name === name);
    if (!group) throw new ConveyorError('ERR_USER_NOT_FOUND', `--group-add ${name}: no such group in the image's /etc/group`, { hint: 'give a gid instead' });
    return group.gid;
  });
  return { ...user, additionalGids: [...new Set([...user.additionalGids, ...gids])] };
}

/**
 * --pid/--ipc as the spec takes them: container:X becomes the path of the
 * namespace of X's init, X a running container of this store (checked
 * against its recorded start time, so a recycled pid is not joined).
 */
async function namespaceOf(store: Store, type: 'pid' | 'ipc', flag: NamespaceFlag | undefined): Promise<NamespaceMode> {
  if (flag?.mode !== 'container') return flag?.mode === 'host' ? { mode: 'host' } : { mode: 'private' };
  const entry = await resolveContainer(store, flag.ref);
  const state = entry.state ? observe(entry.state) : undefined;
  if (state?.status !== 'running' || !state.pid || !processRuns(state.pid, state.pidStartTime)) {
    throw new ConveyorError('ERR_CONTAINER_NOT_RUNNING', `--${type} container:${flag.ref}: the container is not running`, {
      hint: 'start it first (ctr-spawn -d)',
    });
  }
  return { mode: 'join', path: `/proc/${state.pid}/ns/${type}` };
}

/** Reads a --spec file: an OCI runtime spec, e.g. from --print-spec, edited. */
export async function readSpecFile(path: string): Promise<Record<string, unknown>> {
  const spec = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  if (!spec || typeof spec !== 'object' || !spec.process) throw new ConveyorError('ERR_USAGE', `--spec ${path}: not an OCI runtime spec`);
  return spec;
}

/** Writes the spec as the bundle's config.json. */
export async function writeConfig(paths: ContainerPaths, spec: Record<string, unknown>): Promise<void> {
  // Synchronous, as the name files: open, write and close of a small new file cost less than three trips through the thread pool.
  writeFileSync(join(paths.containerDir, 'config.json'), JSON.stringify(spec, null, 2) + '\n');
}
