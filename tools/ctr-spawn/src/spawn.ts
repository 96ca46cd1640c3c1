/**
 * Running one container: take the first `rootfs` or `mount` record, mount an
 * ephemeral overlay for a rootfs record, translate image config + options
 * into an OCI bundle in the container directory, run it in the foreground
 * with the OCI runtime (`runc run`), forward signals, report the exit, and
 * clean up (runtime state, cgroups, overlay, container directory) whatever
 * happened. Library code: streams, fds and a signal source come in from cli.ts.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { basename, join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readKernelLog, uptimeMicros } from '@conveyor/lib-common/kmsg';
import { readLines } from '@conveyor/lib-common/ndjson';
import { mountOverlay, mountsUnder, removeContainer, type ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import { trustedLowerDirs, trustedMountPaths, trustedRecordStore } from '@conveyor/lib-common/overlay/record-paths';
import { RECORD_VERSION, type ContainerRecord, type RootfsRecord } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { boundingCaps, findInit, nofileHardLimit, removeCgroups, swapLimitSupported } from './host.js';
import { checkWorkdir, envValue, mergeEnv, type SpawnOptions } from './options.js';
import { findCommand, mkdirInRoot, DEFAULT_PATH } from './rootfs.js';
import { applyCaps, buildSpec, DEFAULT_CAPS, type Mount } from './spec.js';
import { defaultSeccomp } from './seccomp.js';
import { resolveUser } from './user.js';

export interface RecordSink {
  write(record: object): Promise<void>;
}

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

/** Delivers signals sent to ctr-spawn; returns an unsubscribe function. */
export type SignalSource = (handler: (signal: NodeJS.Signals) => void) => () => void;

export interface SpawnIO {
  /** Where the record comes from (stdin, or the --record file). */
  input: Readable;
  /** True when input is our stdin, which then cannot also be the container's. */
  inputIsStdin: boolean;
  /** Our stdin, stdout and stderr as fds; the container's stdio is taken from them. */
  fds: { stdin: number; stdout: number; stderr: number };
  out: RecordSink;
  log: Logger;
  signals: SignalSource;
  /** Whether our stdin is a terminal. */
  stdinIsTTY: boolean;
}

/** 128 + N for signal N, as shells and Docker report a death by signal. */
function signalExit(signal: NodeJS.Signals): number {
  return 128 + (osConstants.signals[signal] ?? 0);
}

/** The first rootfs or mount record of the input; records before it are reported and skipped. */
async function firstRecord(input: Readable, log: Logger): Promise<Record<string, unknown>> {
  for await (const { record, source, line } of readLines(input)) {
    if (record?.type === 'rootfs' || record?.type === 'mount') return record;
    log.warn(`${source}:${line}: skipping a ${JSON.stringify(record?.type)} record: ctr-spawn runs rootfs and mount records`);
  }
  throw new ConveyorError('ERR_INPUT_RECORD', 'no rootfs or mount record on input', {
    hint: 'pipe in layer-unpack or overlay-mount output, e.g. img-ls busybox | layer-unpack | ctr-spawn -- sh',
  });
}

/**
 * The overlay of a mount record: its paths exactly those its id names in a
 * trusted store (trustedMountPaths), and a live mount there.
 */
async function existingMount(store: Store, record: Record<string, unknown>, runtimeRoot: string): Promise<ContainerPaths> {
  const paths = await trustedMountPaths(store, record);
  const id = paths.id;
  if (!(await mountsUnder(paths.merged)).includes(paths.merged)) {
    throw new ConveyorError('ERR_MOUNT_NOT_FOUND', `${paths.merged} is not mounted`, { hint: 'mount it again: overlay-mount' });
  }
  // One container per mount: a second run would share (and on exit tear down) the first one's state.
  if (existsSync(join(runtimeRoot, id))) {
    throw new ConveyorError('ERR_SPAWN_FAILED', `container ${id.slice(0, 12)} is already running on this mount`, { hint: 'mount another overlay-mount for a second container' });
  }
  return paths;
}

export interface PreparedSpec {
  spec: Record<string, unknown>;
  hostname: string;
}

function underAny(path: string, mounts: { destination: string }[]): boolean {
  return mounts.some((m) => path === m.destination || path.startsWith(m.destination + '/'));
}

/** Resolves the image config and options against the mounted rootfs into a spec. */
export async function prepareSpec(record: Record<string, unknown>, paths: ContainerPaths, options: SpawnOptions, cgroupsPath: string): Promise<PreparedSpec> {
  const config = (record.config && typeof record.config === 'object' ? record.config : {}) as RootfsRecord['config'];
  const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.every((s) => typeof s === 'string') ? (v as string[]) : undefined);
  const rootfs = paths.merged;
  const entrypoint = options.entrypoint ?? strings(config.Entrypoint) ?? [];
  const cmd = options.command.length > 0 ? options.command : options.entrypoint !== undefined ? [] : (strings(config.Cmd) ?? []);
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw new ConveyorError('ERR_USAGE', 'no command specified', { hint: 'give one after --, e.g. ctr-spawn -- sh -c "echo hi"' });
  const user = await resolveUser(rootfs, options.user ?? (typeof config.User === 'string' ? config.User : ''));
  const hostname = options.hostname ?? paths.id.slice(0, 12);
  const imageEnv = strings(config.Env) ?? [];
  let env = mergeEnv([`PATH=${DEFAULT_PATH}`, `HOSTNAME=${hostname}`], options.tty ? ['TERM=xterm'] : [], imageEnv, options.env);
  if (envValue(env, 'HOME') === undefined) env = [...env, `HOME=${user.home}`];
  const workdirRaw = options.workdir ?? (typeof config.WorkingDir === 'string' && config.WorkingDir !== '' ? config.WorkingDir : '/');
  if (!workdirRaw.startsWith('/')) throw new ConveyorError('ERR_USAGE', `working directory must be absolute: ${JSON.stringify(workdirRaw)}`);
  const cwd = posix.normalize(workdirRaw);
  await checkWorkdir(rootfs, cwd);
  const mountsByUser = [...options.volumes, ...options.tmpfs];
  if (!underAny(cwd, mountsByUser)) await mkdirInRoot(rootfs, cwd);

  // Exit 126/127 before the runtime starts, as Docker reports them.
  const lookup = await findCommand(rootfs, args[0], envValue(env, 'PATH'), cwd);
  if (!underAny(lookup.path, mountsByUser)) {
    if (lookup.status === 'not-found') {
      throw new ConveyorError('ERR_SPAWN_COMMAND_NOT_FOUND', `exec: ${JSON.stringify(args[0])}: ${args[0].includes('/') ? 'no such file or directory' : 'executable file not found in $PATH'}`, {
        hint: 'check the command and the image',
      });
    }
    if (lookup.status === 'not-executable') {
      throw new ConveyorError('ERR_SPAWN_NOT_EXECUTABLE', `exec: ${JSON.stringify(lookup.path)}: ${lookup.why}`, { hint: 'the command must be an executable file' });
    }
  }

  const extraMounts: Mount[] = [];
  await writeFile(join(paths.containerDir, 'hostname'), `${hostname}\n`);
  await writeFile(join(paths.containerDir, 'hosts'), hostsFile(hostname));
  extraMounts.push({ destination: '/etc/hostname', type: 'bind', source: join(paths.containerDir, 'hostname'), options: ['rbind', 'rprivate'] });
  extraMounts.push({ destination: '/etc/hosts', type: 'bind', source: join(paths.containerDir, 'hosts'), options: ['rbind', 'rprivate'] });
  if (options.netHost && existsSync('/etc/resolv.conf')) {
    extraMounts.push({ destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'rprivate', 'ro'] });
  }
  let finalArgs = args;
  if (options.init) {
    const init = findInit();
    if (!init) throw new ConveyorError('ERR_SPAWN_FAILED', '--init needs a static tini', { hint: 'apt-get install tini (provides /usr/bin/tini-static)' });
    extraMounts.push({ destination: '/.conveyor-init', type: 'bind', source: init, options: ['rbind', 'rprivate', 'ro'] });
    finalArgs = ['/.conveyor-init', '--', ...args];
  }
  // A missing host path is created as a directory, as docker run -v does.
  for (const volume of options.volumes) await mkdir(volume.source, { recursive: true });
  const available = boundingCaps();
  const capabilities = options.privileged ? available : applyCaps(DEFAULT_CAPS, options.capAdd, options.capDrop, available);
  const spec = buildSpec({
    rootfs,
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
    volumes: options.volumes,
    tmpfs: options.tmpfs,
    extraMounts,
    limits: { ...options.limits, swapLimit: options.limits.memory !== undefined && swapLimitSupported() },
    cgroupsPath,
    nofile: nofileHardLimit(),
    seccomp: options.privileged || options.seccompUnconfined ? undefined : defaultSeccomp(capabilities, options.arch, options.seccompProfile),
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
async function adoptSpec(spec: Record<string, unknown>, paths: ContainerPaths, store: Store, cgroupsPath: string): Promise<Record<string, unknown>> {
  const hostname = typeof spec.hostname === 'string' ? spec.hostname : paths.id.slice(0, 12);
  await writeFile(join(paths.containerDir, 'hostname'), `${hostname}\n`);
  await writeFile(join(paths.containerDir, 'hosts'), hostsFile(hostname));
  const other = new RegExp(`^${store.containersDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/[a-f0-9]{64}/(hostname|hosts)$`);
  const mounts = Array.isArray(spec.mounts) ? (spec.mounts as Mount[]) : [];
  return {
    ...spec,
    root: { ...((spec.root as object) ?? {}), path: paths.merged },
    mounts: mounts.map((m) => {
      const match = typeof m.source === 'string' ? other.exec(m.source) : null;
      return match ? { ...m, source: join(paths.containerDir, match[1]) } : m;
    }),
    linux: { ...((spec.linux as object) ?? {}), cgroupsPath },
  };
}

function hostsFile(hostname: string): string {
  return `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${hostname}\n`;
}

interface RuntimeResult {
  code: number;
  errors: string[];
}

function runtimeLogArgs(runtime: string, logPath: string): string[] {
  const name = basename(runtime);
  if (name === 'runc') return ['--log', logPath, '--log-format', 'json'];
  if (name === 'crun') return [`--log=file:${logPath}`, '--log-format=json'];
  return [];
}

async function runtimeErrors(logPath: string): Promise<string[]> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  const errors: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === 'error' || entry.level === 'fatal') && entry.msg) errors.push(entry.msg);
    } catch {
      // not JSON: a runtime that ignores --log-format
    }
  }
  return errors;
}

/** Turns the runtime's own failure text into Docker's exit codes. */
export function runtimeFailure(message: string): ConveyorError {
  const text = message.replace(/^runc run failed: /, '');
  if (/exec: .*(executable file not found|no such file or directory)/i.test(text)) {
    return new ConveyorError('ERR_SPAWN_COMMAND_NOT_FOUND', text, { hint: 'check the command and the image' });
  }
  if (/exec: .*(permission denied|is a directory|exec format error)/i.test(text)) {
    return new ConveyorError('ERR_SPAWN_NOT_EXECUTABLE', text, { hint: 'the command must be an executable file' });
  }
  if (/cgroup/i.test(text)) return new ConveyorError('ERR_CGROUP', text, { hint: 'check the limits (--memory, --cpus, --pids-limit) and the cgroup filesystem' });
  return new ConveyorError('ERR_SPAWN_FAILED', text, { hint: 'the OCI runtime refused the container; inspect it with --print-spec' });
}

/** Runs a helper command to completion, quietly; resolves to its exit code. */
function quiet(cmd: string, args: string[]): Promise<{ code: number; stdout: string }> {
  return new Promise((done) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.on('error', () => done({ code: 127, stdout }));
    child.on('close', (code) => done({ code: code ?? 1, stdout }));
  });
}

function oomKilled(cgroupsPath: string, since: number): boolean {
  const marker = `oom_memcg=${cgroupsPath}`;
  return readKernelLog((m) => {
    const at = m.indexOf(marker);
    return at >= 0 && [',', '/', undefined].includes(m[at + marker.length]);
  }, 1, since).length > 0;
}

function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)}${units[unit]}`;
}

/**
 * Runs the container described by the first usable record of `io.input`.
 * Resolves to the exit code ctr-spawn should end with: the container's own,
 * or 128+N when it died of signal N. Throws ConveyorError for spawn failures
 * (125/126/127) after cleaning up.
 */
export async function spawnContainer(options: SpawnOptions, io: SpawnIO): Promise<number> {
  let pendingSignal: NodeJS.Signals | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  let containerId: string | undefined;
  let stops = 0;
  let runtimeStarted = false;
  let interrupt: ((error: Error) => void) | undefined;
  const interrupted = new Promise<never>((_, reject) => (interrupt = reject));
  interrupted.catch(() => undefined);
  const unsubscribe = io.signals((signal) => {
    if (child?.pid !== undefined && child.exitCode === null) {
      try {
        child.kill(signal);
      } catch {
        // runtime already gone
      }
      // A pid 1 without a handler ignores SIGTERM and SIGINT: the third one kills it.
      if ((signal === 'SIGINT' || signal === 'SIGTERM') && ++stops === 3 && containerId) {
        io.log.warn(`third ${signal}: killing container ${containerId.slice(0, 12)}`);
        void quiet(options.runtime, ['--root', options.runtimeRoot, 'kill', containerId, 'KILL']);
      }
    } else {
      pendingSignal ??= signal;
      // Still waiting for the record (a producer that never closes): stop waiting.
      interrupt?.(new Error(`interrupted by ${signal}`));
    }
  });
  let cleanup: (() => Promise<void>) | undefined;
  try {
    let record: Record<string, unknown>;
    try {
      record = await Promise.race([firstRecord(io.input, io.log), interrupted]);
    } catch (error) {
      if (pendingSignal) {
        io.input.destroy();
        return signalExit(pendingSignal);
      }
      throw error;
    }
    interrupt = undefined;
    // One container per run: stop reading, so a producer that keeps writing
    // (or never closes) does not keep us alive after the container exits.
    io.input.unpipe();
    io.input.destroy();
    // Records may be forged: the store and every path are checked before anything is mounted or run.
    const store = await trustedRecordStore(record, options.root, { warn: (message) => io.log.warn(message) });
    const ephemeral = record.type === 'rootfs';
    const paths = ephemeral
      ? await mountOverlay(store, await trustedLowerDirs(store, record as unknown as RootfsRecord))
      : await existingMount(store, record, options.runtimeRoot);
    const id = paths.id;
    containerId = id;
    const cgroupsPath = `/conveyor/${id}`;
    const bundleFiles = ['config.json', 'runtime.log', 'hostname', 'hosts'].map((f) => join(paths.containerDir, f));
    let keep = options.keep;
    cleanup = async () => {
      // Only state this run created: never another run's container of the same id.
      if (runtimeStarted && existsSync(join(options.runtimeRoot, id))) await quiet(options.runtime, ['--root', options.runtimeRoot, 'delete', '--force', id]);
      removeCgroups(cgroupsPath);
      if (ephemeral) await removeContainer(store, id, { keepDir: keep });
      else if (!keep) await Promise.all(bundleFiles.map((f) => rm(f, { force: true })));
    };

    let spec: Record<string, unknown>;
    if (options.specFile) {
      spec = JSON.parse(await readFile(options.specFile, 'utf8')) as Record<string, unknown>;
      if (!spec || typeof spec !== 'object' || !spec.process) throw new ConveyorError('ERR_USAGE', `--spec ${options.specFile}: not an OCI runtime spec`);
      spec = await adoptSpec(spec, paths, store, cgroupsPath);
    } else {
      spec = (await prepareSpec(record, paths, options, cgroupsPath)).spec;
    }
    if (options.printSpec) {
      await io.out.write(spec);
      return 0;
    }
    await writeFile(join(paths.containerDir, 'config.json'), JSON.stringify(spec, null, 2) + '\n');
    if (pendingSignal) return signalExit(pendingSignal);

    // Container stdio: stdin is /dev/null unless -i; with -i and records on
    // stdin, the terminal is reopened.
    let stdin: number | 'ignore' = 'ignore';
    let ttyFd: number | undefined;
    if (options.interactive || options.tty) {
      // runc's foreground terminal mode needs a terminal as its own stdin.
      const stdinUsable = !io.inputIsStdin && (io.stdinIsTTY || !options.tty);
      if (stdinUsable) stdin = io.fds.stdin;
      else {
        try {
          ttyFd = openSync('/dev/tty', 'r+');
          stdin = ttyFd;
        } catch {
          throw new ConveyorError('ERR_USAGE', `${options.tty ? '-t' : '-i'} needs a terminal: /dev/tty cannot be opened`, {
            hint: options.tty ? 'drop -t, or run from a terminal' : 'pass the record with --record FILE so stdin goes to the container',
          });
        }
      }
    }
    const usesTerminal = ttyFd !== undefined || (stdin === io.fds.stdin && io.stdinIsTTY);
    const logPath = join(paths.containerDir, 'runtime.log');
    const started = uptimeMicros();
    const createdAt = new Date().toISOString();

    if (options.detach) {
      const ctrLog = join(paths.containerDir, 'ctr.log');
      const logFd = openSync(ctrLog, 'a', 0o640);
      let result: RuntimeResult;
      try {
        result = await runRuntime(options, [...runtimeLogArgs(options.runtime, logPath), 'run', '--bundle', paths.containerDir, '--detach', id], [stdin, logFd, logFd], false, (c) => {
          child = c;
          runtimeStarted = true;
        });
      } finally {
        closeSync(logFd);
        if (ttyFd !== undefined) closeSync(ttyFd);
      }
      if (result.code !== 0) {
        const errors = await runtimeErrors(logPath);
        throw errors.length > 0 ? runtimeFailure(errors.at(-1)!) : new ConveyorError('ERR_SPAWN_FAILED', `${options.runtime} exited with ${result.code}`);
      }
      const state = await quiet(options.runtime, ['--root', options.runtimeRoot, 'state', id]);
      let pid: number | undefined;
      try {
        pid = (JSON.parse(state.stdout) as { pid?: number }).pid;
      } catch {
        pid = undefined;
      }
      const containerRecord: ContainerRecord = {
        type: 'container',
        v: RECORD_VERSION,
        id,
        ...(options.name ? { name: options.name } : {}),
        ...(typeof record.ref === 'string' ? { ref: record.ref } : {}),
        ...(typeof record.digest === 'string' ? { image: record.digest } : {}),
        status: 'running',
        ...(pid ? { pid } : {}),
        createdAt,
        startedAt: new Date().toISOString(),
        bundle: paths.containerDir,
        store: store.root,
      };
      await writeFile(
        join(paths.containerDir, 'state.json'),
        JSON.stringify({ ...containerRecord, runtime: options.runtime, runtimeRoot: options.runtimeRoot, cgroupsPath, ephemeralMount: ephemeral, rootfs: paths.merged, log: ctrLog }, null, 2) + '\n',
      );
      keep = true;
      cleanup = undefined; // it runs on; the control plane stops and removes it
      await io.out.write(containerRecord);
      return 0;
    }

    let result: RuntimeResult;
    try {
      result = await runRuntime(
        options,
        [...runtimeLogArgs(options.runtime, logPath), 'run', '--bundle', paths.containerDir, id],
        [stdin, io.fds.stdout, io.fds.stderr],
        // Its own session unless it must read the terminal: then signals from
        // the terminal reach it directly, and job control does not stop it.
        !usesTerminal,
        (c) => {
          child = c;
          runtimeStarted = true;
          if (pendingSignal) c.kill(pendingSignal);
        },
      );
    } finally {
      if (ttyFd !== undefined) closeSync(ttyFd);
    }
    const errors = result.code !== 0 ? await runtimeErrors(logPath) : [];
    if (errors.length > 0) throw runtimeFailure(errors.at(-1)!);
    if (options.limits.memory !== undefined && result.code !== 0 && oomKilled(cgroupsPath, started - 100_000)) {
      io.log.warn(`container ${id.slice(0, 12)} was killed by the OOM killer: memory limit ${formatSize(options.limits.memory)} reached (exit ${result.code})`);
    }
    return result.code;
  } finally {
    // Still subscribed: a second Ctrl-C must not kill us half-way through cleanup.
    try {
      if (cleanup) await cleanup();
    } catch (error) {
      // The container's exit code (or the spawn error) is the answer; a failed clean-up is reported, not substituted.
      io.log.warn(`clean-up failed: ${(error as Error).message}`);
    } finally {
      unsubscribe();
    }
  }
}

function runRuntime(
  options: SpawnOptions,
  args: string[],
  stdio: StdioOptions,
  ownSession: boolean,
  onStart: (child: ReturnType<typeof spawn>) => void,
): Promise<RuntimeResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(options.runtime, ['--root', options.runtimeRoot, ...args], { stdio, detached: ownSession });
    child.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') {
        reject(new ConveyorError('ERR_RUNTIME_NOT_FOUND', `OCI runtime ${options.runtime} not found`, { hint: 'install runc, or choose one with --runtime' }));
      } else reject(new ConveyorError('ERR_SPAWN_FAILED', `cannot start ${options.runtime}: ${error.message}`));
    });
    child.on('spawn', () => onStart(child));
    child.on('exit', (code, signal) => {
      resolve({ code: code ?? (signal ? signalExit(signal) : 128), errors: [] });
    });
  });
}
