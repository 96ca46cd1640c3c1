/**
 * The supervisor of a detached container (ctr-spawn -d), podman's conmon
 * in small: prestarted by ctr-spawn in its own session and recorded by it as
 * the container's owner in the first state.json (status `created`), it gets
 * its order once the bundle is written, claims the container (still
 * `created`: not removed meanwhile) and starts it under the container's lock
 * (the one removeContainerFully takes, so a removal never runs in the middle
 * of a start), binds its published ports (-p/-P: the order's
 * `publish`, ports/forwarder.ts; a taken one fails the start) and owns their
 * relay until it is done, runs `runtime run` in the foreground with the
 * container's stdout and stderr as pipes into the log (container/log.ts),
 * tells ctr-spawn once the container runs (or why it could not: then
 * everything is cleaned up first), waits for the end, records it in
 * state.json (exit code, signal, OOM kill, finishedAt) and cleans up: the
 * runtime's state and cgroups, the overlay unless --keep, everything with
 * --rm. Signals sent to it go to the container (through the runtime).
 * With a restart policy (state.json restartPolicy, restart.ts) it runs the
 * container again in place when it ends (same id, same overlay, the
 * runtime's state and cgroups of the last run removed first), after
 * Docker's backoff, counting restartCount, unless ctr-stop marked it
 * stoppedByUser; a restart the runtime refuses ends it (exit code 125).
 *
 * The container counts as started when the runtime writes its pid file:
 * runc writes it after the exec of the command succeeded, and reports a
 * missing or non-executable command before that.
 *
 * Failure: a failure to start is handed to ctr-spawn as a ConveyorError
 * (125/126/127 there). After the start nothing is thrown: a failed log write
 * stops the log, a failed clean-up is written to the supervisor's stderr
 * (supervisor.log in the container directory).
 */
import { readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConveyorError, toConveyorError } from '@conveyor/lib-common/errors';
import { uptimeMicros } from '@conveyor/lib-common/kmsg';
import { startTime, withLock } from '@conveyor/lib-common/lock';
import type { ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import { Store } from '@conveyor/lib-common/store';
import { DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE, LogWriter } from '@conveyor/lib-common/container/log';
import { type Runtime, runtimeErrors, runtimeFailure, runtimeLogArgs, signalExit } from '@conveyor/lib-common/container/runtime';
import { type ContainerState, LOG_FILE, type ProcessIdentity, readState, updateState, writeState } from '@conveyor/lib-common/container/state';
import { startProcess, type Subprocess, type SubprocessResult } from '@conveyor/lib-common/subprocess';
import type { CleanupTarget } from '../cleanup.js';
import type { Forwarder } from '../ports/forwarder.js';
import type { PortMapping } from '../ports/publish.js';
import { endOf, exitedState } from '../state.js';

/** The ports a detached container publishes: the supervisor binds them before the start and owns their relay (ports/forwarder.ts). */
export interface PublishOrder {
  netnsPath: string;
  mappings: PortMapping[];
}

/** The order's `publish`, checked: a malformed one binds nothing. */
function publishOrder(raw: unknown): PublishOrder {
  const order = raw as Partial<PublishOrder> | null;
  const valid =
    order !== null &&
    typeof order === 'object' &&
    typeof order.netnsPath === 'string' &&
    order.netnsPath.startsWith('/') &&
    Array.isArray(order.mappings) &&
    order.mappings.every(
      (m) =>
        typeof m?.hostIP === 'string' &&
        isIP(m.hostIP) !== 0 &&
        Number.isInteger(m.hostPort) &&
        m.hostPort >= 0 &&
        m.hostPort <= 65535 &&
        (m.hostPortEnd === undefined || (Number.isInteger(m.hostPortEnd) && m.hostPortEnd >= m.hostPort && m.hostPortEnd <= 65535)) &&
        Number.isInteger(m.containerPort) &&
        m.containerPort >= 1 &&
        m.containerPort <= 65535 &&
        (m.protocol === 'tcp' || m.protocol === 'udp'),
    );
  if (!valid) throw new ConveyorError('ERR_INTERNAL', 'supervisor: malformed ports in the order from ctr-spawn');
  return { netnsPath: order.netnsPath!, mappings: order.mappings! };
}

/** What the supervisor tells ctr-spawn, as one JSON line. */
export type Handoff = { started: ContainerState } | { error: { code: string; message: string; hint?: string } };

export interface SuperviseIO {
  /** Tells ctr-spawn how the start went; called once. */
  handoff: (message: Handoff) => void;
  /** The supervisor itself, recorded as the container's owner. */
  self: ProcessIdentity;
  /** Subscribes to signals sent to the supervisor; they go to the runtime. */
  signals: (handler: (signal: NodeJS.Signals) => void) => void;
  /** Messages after the hand-off. */
  warn: (message: string) => void;
  /** The order's ports to publish (PublishOrder, checked here); absent: none. */
  publish?: unknown;
  /** The Node binary that runs the port relay. */
  execPath: string;
  /**
   * Tests only (CONVEYOR_TEST_SUPERVISOR_PAUSE, cli.ts): holds the start at
   * `before-claim` (the order taken, the container's lock not yet) or
   * `starting` (claimed under the lock, the runtime not yet run), and a
   * restart at `restarting` (decided on, the container's lock not yet taken)
   * or `restart-starting` (under the lock, the runtime not yet run again).
   */
  pause?: (point: 'before-claim' | 'starting' | 'restarting' | 'restart-starting') => Promise<void>;
}

/** How a start went: the container's pid (the runtime wrote its pid file), or the runtime's result when it ended first. */
type StartResult = { pid: number } | { result: SubprocessResult };

/** The outcome of a restart: not wanted any more (removed or stopped meanwhile: undefined), failed, or running. */
type Restarted = undefined | { error: ConveyorError } | { restarted: StartResult; running: ContainerState };

/** The outcome of the claim and start: not waiting (removed), failed, or running. */
type Begun = { refused: true } | { error: ConveyorError } | { state: ContainerState; start: StartResult; child: Subprocess; target: CleanupTarget };

/** Whether two identities name the same process (a recorded start time must match). */
function sameProcess(a: ProcessIdentity | undefined, b: ProcessIdentity): boolean {
  return a !== undefined && a.pid === b.pid && a.startTime === b.startTime;
}

/** The state of a run that started: running, with its pid when the runtime wrote one. */
function runningState(state: ContainerState, start: StartResult): ContainerState {
  const pid = 'pid' in start ? start.pid : undefined;
  const { statusDetail: _detail, ...rest } = state;
  return { ...rest, status: 'running', ...(pid ? { pid, pidStartTime: startTime(pid) } : {}), startedAt: new Date().toISOString() };
}

/** Resolves with the runtime's result, or the pid once `pidFile` holds one. */
async function startedOrEnded(child: Subprocess, pidFile: string): Promise<StartResult> {
  let ended: SubprocessResult | undefined;
  void child.result.then((result) => (ended = result));
  for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
    const text = await readFile(pidFile, 'utf8').catch(() => '');
    const pid = Number.parseInt(text, 10);
    if (pid > 0) return { pid };
    if (ended) return { result: ended };
    await sleep(delay);
  }
}

/** Supervises container `id` of the store at `storeRoot`; resolves to the supervisor's exit code. */
export async function supervise(storeRoot: string, id: string, io: SuperviseIO): Promise<number> {
  const store = new Store(storeRoot);
  const containerDir = store.containerDir(id);
  const paths: ContainerPaths = {
    id,
    containerDir,
    upper: join(containerDir, 'upper'),
    work: join(containerDir, 'work'),
    merged: join(containerDir, 'merged'),
  };
  const runtimeLog = join(paths.containerDir, 'runtime.log');
  // cleanup.ts's PID_FILE: that module (and the other clean-up code) is loaded only when needed, off the start path.
  const pidFile = join(paths.containerDir, 'container.pid');
  let log: LogWriter | undefined;
  // Bound before the start, held across restarts, closed when the supervisor is done: the ports are the container's for its life.
  let forwarder: Forwarder | undefined;
  // What failedStart cleans up: set once the container is claimed (its state names runtime, cgroups, overlay).
  let target: CleanupTarget | undefined;
  let child: Subprocess | undefined;
  let startedMicros = uptimeMicros();
  await io.pause?.('before-claim');
  // The claim and the start under the container's lock, which removeContainerFully takes too: a
  // removal comes before (no container is waiting then, and nothing is started) or after (the
  // runtime's state and cgroups exist by then, for it to remove), never in the middle of the start.
  const begun = await withLock(store.lockPath(`container-${id}`), async (): Promise<Begun> => {
    const waiting = await readState(store, id);
    if (waiting?.status !== 'created') return { refused: true };
    let claimed: ContainerState = { ...waiting, supervisor: io.self };
    const claimedTarget = cleanupTarget(claimed);
    target = claimedTarget;
    if (io.publish !== undefined) {
      const { startForwarder } = await import('../ports/forwarder.js');
      forwarder = await startForwarder({ ...publishOrder(io.publish), log: { warn: io.warn }, execPath: io.execPath });
      claimed = { ...claimed, ports: forwarder.ports };
    }
    // ctr-spawn recorded us as the owner (detach.ts); an owner recorded otherwise is replaced before the runtime runs.
    if (!sameProcess(waiting.supervisor, io.self)) await writeState(store, claimed);
    await io.pause?.('starting');
    log = new LogWriter(join(paths.containerDir, LOG_FILE), {
      maxSize: claimed.logMaxSize ?? DEFAULT_LOG_MAX_SIZE,
      maxFiles: claimed.logMaxFiles ?? DEFAULT_LOG_MAX_FILES,
    });
    startedMicros = uptimeMicros();
    const started = runRuntime(claimedTarget.runtime);
    child = started;
    io.signals((signal) => {
      if (child?.exitCode === null) child.kill(signal);
    });
    const start = await startedOrEnded(started, pidFile);
    const error = await startFailure(claimedTarget.runtime, start);
    if (error) return { error };
    const running = runningState(claimed, start);
    await writeState(store, running);
    return { state: running, start, child: started, target: claimedTarget };
  }).catch((error: unknown): Begun => ({ error: toConveyorError(error) }));
  if ('refused' in begun) {
    // Removed (or taken) before we came: nothing is ours to start or to clean up.
    io.handoff({ error: { code: 'ERR_SPAWN_FAILED', message: `container ${id.slice(0, 12)} is not waiting to be started` } });
    return 1;
  }
  if ('error' in begun) return failedStart(begun.error);
  const { start } = begun;
  let state = begun.state;
  child = begun.child;
  target = begun.target;
  const runtime = target.runtime;
  io.handoff({ started: state });

  let result = 'result' in start ? start.result : await child.result;
  let backoff: number | undefined;
  for (;;) {
    const exitCode = result.exitCode ?? (result.signal ? signalExit(result.signal) : 128);
    const { oomKilled } = await import('../oom.js');
    const oom = exitCode === 137 && oomKilled(state.cgroupsPath, startedMicros - 100_000);
    const ranMs = (uptimeMicros() - startedMicros) / 1000;
    const ended = await updateState(store, id, (s) => exitedState(s, endOf(exitCode, oom))).catch((error) => {
      io.warn(`recording the exit failed: ${(error as Error).message}`);
      return undefined;
    });
    if (!ended) break; // removed meanwhile (ctr-rm -f)
    const { shouldRestart, nextBackoff } = await import('./restart.js');
    const restartCount = ended.restartCount ?? 0;
    if (!shouldRestart(ended.restartPolicy, { exitCode, restartCount, stoppedByUser: Boolean(ended.stoppedByUser) })) break;
    backoff = nextBackoff(backoff, ranMs);
    await sleep(backoff);
    await io.pause?.('restarting');
    // The decision, the clean-up of the last run and the new start under the container's lock, as the first start:
    // a removal (ctr-rm -f) comes before (no state: nothing is started) or after (the runtime's state and cgroups exist
    // by then, for it to remove), never while runc creates them; a ctr-stop that marks stoppedByUser comes before (no
    // restart) or finds the new run's pid.
    const lastRun = target;
    const restart = await withLock(store.lockPath(`container-${id}`), async (): Promise<Restarted> => {
      const last = await readState(store, id);
      if (!last || last.stoppedByUser || last.status !== 'exited') return undefined;
      const restarting: ContainerState = { ...last, status: 'running', restartCount: restartCount + 1, statusDetail: 'restarting' };
      await writeState(store, restarting);
      const { cleanUpStopped } = await import('../cleanup.js');
      try {
        // The runtime's state and cgroups of the last run; the overlay stays for the next.
        await cleanUpStopped({ ...lastRun, ephemeral: false, keep: true, keepNetwork: true });
      } catch (error) {
        io.warn(`clean-up before restart failed: ${(error as Error).message}`);
      }
      io.warn(`restarting (${restartCount + 1}) after exit code ${exitCode}, waited ${backoff} ms`);
      // Errors logged by an earlier run must not be taken for this start's.
      await rm(runtimeLog, { force: true }).catch(() => undefined);
      await io.pause?.('restart-starting');
      startedMicros = uptimeMicros();
      child = runRuntime(runtime);
      const restarted = await startedOrEnded(child, pidFile);
      const error = await startFailure(runtime, restarted);
      if (error) {
        await writeState(store, { ...exitedState(restarting, endOf(125)), statusDetail: `restart failed: ${error.message}` });
        return { error };
      }
      const running = runningState(restarting, restarted);
      await writeState(store, running);
      return { restarted, running };
    }).catch((error: unknown) => ({ error: toConveyorError(error) }));
    if (restart === undefined) break; // removed, or stopped by the user, meanwhile
    if ('error' in restart) {
      io.warn(`restart failed: ${restart.error.message}`);
      break;
    }
    const { restarted } = restart;
    state = restart.running;
    result = 'result' in restarted ? restarted.result : await child.result;
  }
  try {
    log?.close();
  } catch (error) {
    io.warn(`log close failed: ${(error as Error).message}`);
  }
  await forwarder?.close();
  const ended = await readState(store, id).catch(() => undefined);
  const { cleanUp, cleanUpStopped } = await import('../cleanup.js');
  try {
    if (ended?.autoRemove) {
      if (ended.ephemeralMount) {
        const { removeContainerFully } = await import('@conveyor/lib-common/container/remove');
        for (const warning of await removeContainerFully(store, { id, dir: paths.containerDir, state: ended }, { volumes: true })) io.warn(warning);
      } else await cleanUp(target);
    } else if (ended) await cleanUpStopped({ ...target, keep: Boolean(ended.keep) });
    else await cleanUpStopped(target); // removed meanwhile (ctr-rm -f): what is left of the runtime still goes
  } catch (error) {
    io.warn(`clean-up failed: ${(error as Error).message}`);
  }
  return 0;

  /** `runtime run` of the bundle, its output into the log. */
  function runRuntime(runtime: Runtime): Subprocess {
    const started = startProcess(
      runtime.runtime,
      ['--root', runtime.runtimeRoot, ...runtimeLogArgs(runtime.runtime, runtimeLog), 'run', '--bundle', paths.containerDir, '--pid-file', pidFile, id],
      { stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: false },
    );
    for (const stream of ['stdout', 'stderr'] as const) {
      started[stream]?.on('data', (chunk: Buffer) => {
        try {
          log?.write(stream, chunk);
        } catch (error) {
          io.warn(`log write failed, output is dropped from now on: ${(error as Error).message}`);
          log = undefined;
        }
      });
    }
    return started;
  }

  /** Why the runtime could not start the container, or undefined when it started (or ran and ended by itself). */
  async function startFailure(runtime: Runtime, start: StartResult): Promise<ConveyorError | undefined> {
    if (!('result' in start)) return undefined;
    if (start.result.code !== undefined) {
      return start.result.code === 'ENOENT'
        ? new ConveyorError('ERR_RUNTIME_NOT_FOUND', `OCI runtime ${runtime.runtime} not found`, { hint: 'install runc, or choose one with --runtime' })
        : new ConveyorError('ERR_SPAWN_FAILED', `cannot start ${runtime.runtime}: ${start.result.originalMessage}`);
    }
    if (start.result.exitCode !== 0) {
      const errors = await runtimeErrors(runtimeLog);
      // A non-zero exit without a runtime error is the container's own: it started and ended before we looked.
      if (errors.length > 0) return runtimeFailure(errors.at(-1)!);
    }
    return undefined;
  }

  /** What is cleaned up after the container of `state`. */
  function cleanupTarget(state: ContainerState): CleanupTarget {
    return {
      runtime: { runtime: state.runtime, runtimeRoot: state.runtimeRoot },
      store,
      paths,
      cgroupsPath: state.cgroupsPath,
      ephemeral: state.ephemeralMount,
      keep: false,
      name: state.name,
      runtimeStarted: () => true,
    };
  }

  async function failedStart(error: ConveyorError): Promise<number> {
    try {
      log?.close();
      await forwarder?.close();
      const { cleanUp } = await import('../cleanup.js');
      // Not claimed (the state could not be read): nothing known to clean up; ctr-spawn, if alive, does.
      if (target) await cleanUp(target);
    } catch (cleanupError) {
      io.warn(`clean-up after a failed start failed: ${(cleanupError as Error).message}`);
    }
    const err = toConveyorError(error);
    io.handoff({ error: { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) } });
    return 1;
  }
}
