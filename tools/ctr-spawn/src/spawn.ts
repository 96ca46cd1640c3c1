/**
 * Running one container, in order: take the first `rootfs` or `mount` record
 * (record.ts), make its directory, mount its overlay and set up its network
 * together (network/), write the bundle (bundle.ts), pick the
 * container's stdin (tty.ts), record it in state.json (state.ts), run it with
 * the OCI runtime (runtime.ts, `run`: one call) in the foreground or hand it
 * to a supervisor (detach.ts, supervisor/) while forwarding signals (signals.ts),
 * report an OOM kill (oom.ts), and clean up whatever happened (cleanup.ts),
 * before the exit code is returned. What needs no record (the --root store's
 * check, the network module) begins before it is read; earlier runs' trash is
 * swept while a pipe's record is awaited (a run that read a file removes its own
 * directory, and sweeps after its clean-up). Each phase is marked in the trace
 * (trace.ts, CONVEYOR_TRACE=1). Library code: streams, fds, a signal source
 * and a kill function come in from cli.ts.
 *
 * Failure: a ConveyorError (exit 125/126/127 in cli.ts) after cleaning up; a
 * failed clean-up is a warning, never the answer.
 */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Logger } from '@conveyor/lib-common/log';
import type { RecordSink } from '@conveyor/lib-common/ndjson';
import { uptimeMicros } from '@conveyor/lib-common/kmsg';
import { sweepTrash } from '@conveyor/lib-common/overlay/mount';
import { Store } from '@conveyor/lib-common/store';
import { adoptSpec, hostSpecFacts, prepareSpec, readSpecFile, writeConfig } from './bundle.js';
import { cleanUp } from './cleanup.js';
import { type PendingSupervisor, prestartSupervisor } from './detach.js';
import { oomWarning } from './oom.js';
import type { Forwarder } from './ports/forwarder.js';
import { combineMappings, publishAll } from './ports/publish.js';
import type { SpawnOptions } from './options.js';
import { checkRootStore, firstRecord, firstRecordSync, hostMountReason, openContainerRoot } from './record.js';
import { seedsVolumes } from './volumes.js';
import { settleAll } from './settle.js';
import { NO_TRACE, type Trace } from './trace.js';
import { runtimeErrors, runtimeFailure, runtimeKill, runtimeLogArgs, runtimeRun } from '@conveyor/lib-common/container/runtime';
import { signalExit, SignalForwarder, type SignalSource } from '@conveyor/lib-common/container/signals';
import { containerStdin } from '@conveyor/lib-common/container/tty';
import { containerRecordOf } from '@conveyor/lib-common/container/targets';
import { endOf, exitedState, initialState } from './state.js';
import { LOG_FILE, type ProcessIdentity, updateState, writeState, writeStateSync } from '@conveyor/lib-common/container/state';
import type { SignalSender } from '@conveyor/lib-common/container/network';

/**
 * The fd of `input` when it is a regular file (opened here for a path: `close` then), else undefined:
 * the stream reads it. A --record file that cannot be opened is ERR_INPUT_RECORD.
 */
function regularFile(input: SpawnIO['inputFile']): { fd: number; close: boolean } | undefined {
  if (input === undefined) return undefined;
  let fd: number;
  try {
    fd = 'fd' in input ? input.fd : openSync(input.path, 'r');
  } catch (error) {
    if ('fd' in input) return undefined;
    throw new ConveyorError('ERR_INPUT_RECORD', `cannot read --record ${input.path}: ${(error as Error).message}`, {
      hint: 'give a file of layer-unpack or overlay-mount output',
    });
  }
  const close = !('fd' in input);
  let isFile = false;
  try {
    isFile = fstatSync(fd).isFile();
  } catch {
    // not looked at: the stream's read says why
  }
  if (isFile) return { fd, close };
  if (close) closeSync(fd);
  return undefined;
}

/** The flag behind each field of SpawnOptions.limits, for messages. */
const LIMIT_FLAGS: Record<string, string> = { memory: '--memory', memorySwap: '--memory-swap', cpus: '--cpus', pids: '--pids-limit' };

export interface SpawnIO {
  /** Where the record comes from (stdin, or the --record file) as a stream: made only when it is not read as a file (inputFile). */
  input: () => Readable;
  /**
   * The same input as a file to read without a stream when it is a regular one: stdin's fd (redirected
   * from a file) or the --record path. A pipe, socket or terminal is read through `input`.
   */
  inputFile?: { fd: number } | { path: string };
  /** True when input is our stdin, which then cannot also be the container's. */
  inputIsStdin: boolean;
  /** Our stdin, stdout and stderr as fds; the container's stdio is taken from them. */
  fds: { stdin: number; stdout: number; stderr: number };
  out: RecordSink;
  log: Pick<Logger, 'warn'>;
  signals: SignalSource;
  /** Whether our stdin is a terminal. */
  stdinIsTTY: boolean;
  /** ctr-spawn itself: the container's owner until a supervisor takes over (state.json). */
  self: ProcessIdentity;
  /** The Node binary that runs a detached container's supervisor. */
  execPath: string;
  /** CONVEYOR_TEST_DETACH_PAUSE (tests only): where a detached start stops for good (detach.ts DetachPoint). */
  detachPause?: string;
  /** We run as root (pasta must then be told to stay root: --runas 0). */
  isRoot: boolean;
  /** Sends a signal to a process (process.kill): the network helper's stop, without a kill(1). */
  kill?: SignalSender;
  /** The phase trace (CONVEYOR_TRACE=1, trace.ts); none by default. */
  trace?: Trace;
}

/**
 * Runs the container described by the first usable record of `io.input`.
 * Resolves to the exit code ctr-spawn should end with: the container's own,
 * or 128+N when it died of signal N. Throws ConveyorError for spawn failures
 * (125/126/127) after cleaning up.
 */
export async function spawnContainer(options: SpawnOptions, io: SpawnIO): Promise<number> {
  const trace = io.trace ?? NO_TRACE;
  const signals = new SignalForwarder(io.signals);
  let cleanup: (() => Promise<void>) | undefined;
  let supervisor: PendingSupervisor | undefined;
  let forwarder: Forwarder | undefined;
  // The trash of earlier runs (their directories, renamed at their clean-up): swept while a pipe's record is awaited.
  let swept: Promise<unknown> | undefined;
  // Loaded while the record is awaited: in a pipeline it comes when the tool upstream is done.
  const networkModule = import('./network/index.js');
  networkModule.catch(() => undefined); // a failure surfaces where it is awaited
  // And the --root store checked meanwhile (read-only: nothing is made before the record), and the spec's host parts.
  const rootChecked = checkRootStore(options.root);
  const specFacts = options.specFile ? undefined : hostSpecFacts(options);
  try {
    let record: Record<string, unknown>;
    const file = regularFile(io.inputFile);
    // Waiting on a producer (a pipe): the trash is swept now, while nothing else runs here, rather than beside the runtime.
    if (file === undefined) swept = rootChecked.then(() => sweepTrash(new Store(resolve(options.root)))).catch(() => undefined);
    if (file !== undefined) {
      // A file: read at once (no stream, no line splitter), and never waits on a producer.
      try {
        record = await firstRecordSync(file.fd, io.log);
      } finally {
        if (file.close) closeSync(file.fd);
      }
      if (signals.pending) return signalExit(signals.pending);
    } else {
      const input = io.input();
      try {
        record = await signals.unlessInterrupted(firstRecord(input, io.log));
      } catch (error) {
        if (signals.pending) {
          input.destroy();
          return signalExit(signals.pending);
        }
        throw error;
      }
      // One container per run: stop reading, so a producer that keeps writing
      // (or never closes) does not keep us alive after the container exits.
      input.unpipe();
      input.destroy();
    }
    trace.mark('record');
    // Started now so that its start-up overlaps the mount and the bundle.
    if (options.detach && !options.printSpec) supervisor = prestartSupervisor(io.execPath, { pauseAt: io.detachPause, say: (m) => io.log.warn(m) });

    const config = (record.config && typeof record.config === 'object' ? record.config : {}) as { ExposedPorts?: unknown; Volumes?: unknown };
    const hostMount =
      hostMountReason({
        ...options,
        seedsVolume: seedsVolumes(
          options.volumes,
          config.Volumes,
          options.tmpfs.map((t) => t.destination),
        ),
      }) !== undefined;
    const root = await openContainerRoot(record, { ...options, hostMount, rootChecked }, io.log);
    const { store, paths, ephemeral } = root;
    const id = paths.id;
    trace.mark('container-dir');
    let cgroupsPath = `/conveyor/${id}`;
    let runtimeStarted = false;
    // From here the directory is ours to remove, whatever else is set up in it by then.
    cleanup = async () => {
      await cleanUp({
        runtime: options,
        store,
        paths,
        cgroupsPath,
        ephemeral,
        keep: options.keep,
        name: options.name,
        runtimeStarted: () => runtimeStarted,
        signal: io.kill,
        networkHelper: options.network.mode === 'pasta' || options.network.mode === 'slirp4netns',
        // A run that waited on a pipe leaves its directory to the next such run's wait; one that read a file
        // removes it in place (measured: a sweep beside the runtime slowed it by more than the removal costs).
        trash: file === undefined,
        trace,
      });
      // Read from a file, with no wait to sweep in: the trash of pipe runs that no pipe run followed (usually none).
      swept ??= sweepTrash(store);
    };
    if (options.rootless) {
      // Under the user's delegated cgroup, or none; a limit without one is refused (ERR_CGROUP), never ignored.
      const { readRootlessFacts, rootlessCgroupsPath } = await import('./rootless.js');
      const limits = Object.entries(options.limits)
        .filter(([, value]) => value !== undefined)
        .map(([name]) => LIMIT_FLAGS[name] ?? name);
      cgroupsPath = rootlessCgroupsPath(id, readRootlessFacts().outsideUid, limits);
    }
    signals.onRepeatedStop = (signal) => {
      io.log.warn(`third ${signal}: killing container ${id.slice(0, 12)}`);
      void runtimeKill(options, id, 'KILL');
    };

    // -p, then -P's image ports; bound before the container starts: by us now, or by the supervisor that owns a detached one.
    const mappings = combineMappings(options.publish ?? [], options.publishAll ? publishAll(config.ExposedPorts) : []);
    // The overlay and the network at once: the network lives in the directory, not in the root.
    // Before the spec: it names the namespace, and /etc/hosts the addresses. Torn down by cleanUp.
    const networkOptions = {
      network: options.network,
      containerDir: paths.containerDir,
      store,
      hostGateway: (options.addHosts ?? []).some((h) => h.ip === 'host-gateway'),
      root: io.isRoot,
      // Nothing joins a foreground container's namespace by our file: the runtime makes it, lo up.
      runtimeNamespace: !options.detach && mappings.length === 0,
    };
    const [driver, network] = await settleAll([
      trace.span('overlay', root.mount()),
      trace.span(
        'network',
        networkModule.then(({ planNetwork, setUpNetwork }) => (options.printSpec ? planNetwork(networkOptions) : setUpNetwork(networkOptions))),
      ),
    ]);
    const spec = await trace.span(
      'spec',
      options.specFile
        ? readSpecFile(options.specFile).then((edited) => adoptSpec(edited, paths, store, cgroupsPath, options, network))
        : prepareSpec(record, paths, options, cgroupsPath, network, root, specFacts).then((prepared) => prepared.spec),
    );
    if (options.printSpec) {
      await io.out.write(spec);
      return 0;
    }
    if (mappings.length > 0 && !network.netnsPath)
      throw new ConveyorError('ERR_USAGE', `-p/-P need a network namespace of the container's own (--net ${network.label})`);
    const publish = mappings.length > 0 ? { netnsPath: network.netnsPath!, mappings } : undefined;
    // config.json, and the relay of a foreground run's ports, together: the state names the ports bound.
    await trace.span(
      'bundle',
      settleAll([
        writeConfig(paths, spec),
        (async () => {
          if (!publish || options.detach) return;
          const { startForwarder } = await import('./ports/forwarder.js');
          forwarder = await startForwarder({ ...publish, log: io.log, execPath: io.execPath });
        })(),
      ]),
    );
    const state = initialState({
      record,
      spec,
      runtime: options,
      store,
      paths,
      cgroupsPath,
      ephemeral,
      driver,
      rootless: options.rootless,
      name: options.name,
      network: network.label,
      ports: forwarder?.ports,
      keep: options.keep,
      autoRemove: options.detach && options.autoRemove,
      restartPolicy: options.detach ? options.restart : undefined,
      // A detached container's owner is its supervisor from the start (detach.ts): a live owner while it starts the container.
      owner: supervisor?.owner ?? io.self,
      log: options.detach ? { path: join(paths.containerDir, LOG_FILE), limits: options.log } : undefined,
    });
    // In the foreground ctr-spawn is the owner and runs it now; a detached container waits for its supervisor.
    // Durable only for a detached container: a foreground run's state cannot outlive a crash (writeState), and
    // is written in sync calls (nothing else is under way here).
    if (options.detach) await trace.span('state', writeState(store, state, { durable: true }));
    else trace.spanSync('state', () => writeStateSync(store, { ...state, status: 'running', startedAt: state.createdAt }, io.self.pid));
    if (signals.pending) return signalExit(signals.pending);

    if (options.detach) {
      const running = await supervisor!.start(
        store,
        id,
        (child) => {
          runtimeStarted = true;
          signals.attach(child, true);
        },
        publish,
      );
      cleanup = undefined; // it runs on; its supervisor records its end and cleans up
      await io.out.write(containerRecordOf(store, { id, dir: paths.containerDir, state: running }));
      return 0;
    }

    const stdin = containerStdin(options, { stdin: io.fds.stdin, inputIsStdin: io.inputIsStdin, stdinIsTTY: io.stdinIsTTY });
    const logPath = join(paths.containerDir, 'runtime.log');
    const started = uptimeMicros();
    let code: number;
    try {
      code = await runtimeRun(options, [...runtimeLogArgs(options.runtime, logPath), 'run', '--bundle', paths.containerDir, id], {
        stdio: [stdin.fd, io.fds.stdout, io.fds.stderr],
        // Its own session unless it must read the terminal: then signals from
        // the terminal reach it directly, and job control does not stop it.
        ownSession: !stdin.usesTerminal,
        onStart: (child) => {
          trace.mark('runtime-started');
          runtimeStarted = true;
          signals.attach(child, true);
        },
      });
    } finally {
      stdin.close();
    }
    trace.mark('runtime-exited');
    // A non-zero exit is the container's own unless the runtime logged why it could not run it.
    const errors = code !== 0 ? await runtimeErrors(logPath) : [];
    if (errors.length > 0) throw runtimeFailure(errors.at(-1)!);
    const oom = oomWarning(id, cgroupsPath, options.limits.memory, code, started);
    if (oom) io.log.warn(oom);
    if (options.keep) await updateState(store, id, (s) => exitedState(s, endOf(code, oom !== undefined)));
    return code;
  } finally {
    supervisor?.cancel(); // not given a container (a failure, --print-spec, a signal): it exits
    // Still subscribed: a second Ctrl-C must not kill us half-way through cleanup.
    try {
      // The relay first: the namespace it is in goes with the clean-up.
      await forwarder?.close();
      if (cleanup) await trace.span('cleanup', cleanup());
    } catch (error) {
      // The container's exit code (or the spawn error) is the answer; a failed clean-up is reported, not substituted.
      io.log.warn(`clean-up failed: ${(error as Error).message}`);
    } finally {
      signals.close();
      // Never a failure: what it could not remove waits for the next sweep.
      await swept;
    }
  }
}
