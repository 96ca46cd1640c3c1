/**
 * Stopping and signalling containers through the OCI runtime (`runc kill`):
 * stop sends the stop signal (the image's StopSignal, else SIGTERM), waits up
 * to the timeout for the container's process to end, then sends SIGKILL, as
 * `docker stop` does; kill sends one signal, as `docker kill`. Signals are
 * taken as Docker takes them: `KILL`, `SIGKILL`, `9`.
 *
 * The end of a container is seen in its state (a supervisor recorded it) or
 * in its process (its pid gone, or a zombie). A container without a live
 * supervisor has nobody to record how it ended, so stop records it in
 * state.json itself: status exited, finishedAt, the signal that ended it,
 * and 137 when that was SIGKILL (another signal's outcome is unknown).
 *
 * Failure: ERR_USAGE for a signal that is not one; kill throws
 * ERR_CONTAINER_NOT_RUNNING for a container that is not running (stop of a
 * stopped container succeeds, as Docker's); stop throws ERR_INTERNAL when
 * the process outlives SIGKILL for KILL_GRACE_MS (a process in the kernel's
 * uninterruptible sleep). The runtime's own errors are not fatal: the
 * process is watched, not the runtime's answer.
 *
 * A container with a restart policy is marked stoppedByUser in state.json
 * before any signal (stop, or kill with KILL or its stop signal), so that its
 * supervisor does not restart it, as Docker does not after `docker stop`.
 */
import { constants as osConstants } from 'node:os';
import { dirname } from 'node:path';
import { ConveyorError } from '../errors.js';
import { Store } from '../store.js';
import { DEFAULT_RUNTIME, DEFAULT_RUNTIME_ROOT } from './remove.js';
import { runtimeKill } from './runtime.js';
import { type ContainerEntry, type ContainerState, isRunning, observe, processRuns, readState, updateState } from './state.js';

/** Docker's default stop timeout, in seconds. */
export const DEFAULT_STOP_TIMEOUT = 10;
/** How long a process may take to die after SIGKILL before we call it stuck. */
export const KILL_GRACE_MS = 10_000;
/** How long a live supervisor gets to record the exit after the process ended. */
export const SUPERVISOR_GRACE_MS = 3_000;
const POLL_MS = 50;

export interface Signal {
  /** The name without SIG (`TERM`), or the number as text for a signal Node has no name for (real-time ones). */
  arg: string;
  number: number;
  /** `SIGTERM`, or `SIG34` for an unnamed one. */
  name: string;
}

const SIGNAL_NUMBERS = osConstants.signals as Record<string, number>;
/** Linux's highest signal number (SIGRTMAX). */
const MAX_SIGNAL = 64;

/** Parses a signal as Docker accepts it: `KILL`, `SIGKILL`, `sigkill`, `9`. Throws ERR_USAGE otherwise. */
export function parseSignal(raw: string): Signal {
  const text = String(raw).trim();
  if (/^\d+$/.test(text)) {
    const number = Number(text);
    if (number < 1 || number > MAX_SIGNAL) throw new ConveyorError('ERR_USAGE', `invalid signal: ${text}`, { hint: `a signal number is 1 to ${MAX_SIGNAL}` });
    const name = Object.keys(SIGNAL_NUMBERS).find((key) => SIGNAL_NUMBERS[key] === number && key !== 'SIGIOT' && key !== 'SIGPOLL');
    return name ? { arg: name.slice(3), number, name } : { arg: String(number), number, name: `SIG${number}` };
  }
  const upper = text.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  const number = SIGNAL_NUMBERS[name];
  if (number === undefined || !/^SIG[A-Z0-9]+$/.test(name)) {
    throw new ConveyorError('ERR_USAGE', `invalid signal: ${JSON.stringify(raw)}`, { hint: 'use a name (TERM, SIGKILL) or a number (9)' });
  }
  return { arg: name.slice(3), number, name };
}

/** The runtime of a state (ctr-spawn's defaults for a state written without them). */
function runtimeOf(state: ContainerState) {
  return { runtime: state.runtime || DEFAULT_RUNTIME, runtimeRoot: state.runtimeRoot || DEFAULT_RUNTIME_ROOT };
}

/** The container's stop signal: the image's StopSignal, else SIGTERM. */
function stopSignalOf(state: ContainerState): Signal {
  try {
    return parseSignal(state.stopSignal ?? 'SIGTERM');
  } catch {
    return parseSignal('SIGTERM');
  }
}

/** Whether the container of `state` has ended: recorded as ended, or its process is. */
function containerEnded(state: ContainerState): boolean {
  if (!isRunning(state)) return true;
  return state.pid ? !processRuns(state.pid, state.pidStartTime) : false;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls the state until `done` says so or `ms` passes (ms < 0: forever). Resolves to the last state seen. */
async function waitFor(store: Store, id: string, done: (state: ContainerState) => boolean, ms: number): Promise<ContainerState | undefined> {
  const deadline = ms < 0 ? Number.POSITIVE_INFINITY : Date.now() + ms;
  for (;;) {
    const state = await readState(store, id);
    if (!state || done(state) || Date.now() >= deadline) return state;
    await sleep(POLL_MS);
  }
}

export interface StopOptions {
  /** Seconds to wait after the stop signal before SIGKILL; -1 waits forever. Default: the state's stopTimeout, else 10. */
  timeoutSeconds?: number;
  /** Overrides the state's stop signal. */
  signal?: Signal;
  /** Told each signal as it is sent (for a log line). */
  onSignal?: (signal: Signal) => void;
}

/**
 * Stops a container; resolves to its observed state afterwards (for a --rm
 * container removed as it ended, the last state seen, marked exited). A
 * container that is not running (or a leftover without state) is left as it is.
 */
export async function stopContainer(store: Store, entry: ContainerEntry, options: StopOptions = {}): Promise<ContainerState | undefined> {
  // Read again after the mark: a supervisor may have restarted it meanwhile.
  const fresh = entry.state?.restartPolicy ? await markStoppedByUser(store, entry.id) : entry.state;
  const state = fresh ? observe(fresh) : undefined;
  if (!state || !isRunning(state)) return state;
  const rt = runtimeOf(state);
  const stopSignal = options.signal ?? stopSignalOf(state);
  const timeout = options.timeoutSeconds ?? state.stopTimeout ?? DEFAULT_STOP_TIMEOUT;
  let last = stopSignal;
  options.onSignal?.(stopSignal);
  await runtimeKill(rt, state.id, stopSignal.arg);
  let now = await waitFor(store, state.id, containerEnded, timeout < 0 ? -1 : timeout * 1000);
  if (now && !containerEnded(now)) {
    last = parseSignal('KILL');
    options.onSignal?.(last);
    await runtimeKill(rt, state.id, last.arg);
    now = await waitFor(store, state.id, containerEnded, KILL_GRACE_MS);
    if (now && !containerEnded(now)) {
      throw new ConveyorError('ERR_INTERNAL', `container ${state.id.slice(0, 12)} is still running ${KILL_GRACE_MS / 1000} s after SIGKILL`, {
        hint: 'its process may be in uninterruptible sleep (ps -o stat); retry later',
      });
    }
  }
  const end = await recordEnd(store, state.id, last);
  if (end) return end;
  // Gone: a --rm container's supervisor removed it once it ended.
  const { pid: _pid, ...rest } = state;
  return { ...rest, status: 'exited', finishedAt: new Date().toISOString(), statusDetail: 'removed when it ended (--rm)' };
}

/**
 * After the process ended: gives a live supervisor time to record the exit
 * (its code is the real one), else records it here.
 */
async function recordEnd(store: Store, id: string, last: Signal): Promise<ContainerState | undefined> {
  const recorded = (s: ContainerState) => s.status !== 'running' && s.status !== 'created';
  const supervised = (s: ContainerState) => s.supervisor !== undefined && processRuns(s.supervisor.pid, s.supervisor.startTime);
  let state = await readState(store, id);
  if (state && !recorded(state) && supervised(state)) state = await waitFor(store, id, (s) => recorded(s) || !supervised(s), SUPERVISOR_GRACE_MS);
  if (!state || recorded(state)) return state && observe(state);
  const finishedAt = new Date().toISOString();
  const next = await updateState(store, id, (s) => {
    if (recorded(s)) return undefined;
    const { pid: _pid, ...rest } = s;
    const killed = last.number === SIGNAL_NUMBERS.SIGKILL;
    return {
      ...rest,
      status: 'exited',
      finishedAt,
      signal: last.name,
      ...(killed ? { exitCode: 128 + last.number } : {}),
      statusDetail: killed ? 'killed by ctr-stop' : `stopped by ctr-stop with ${last.name}; exit code unknown`,
    };
  });
  return next && observe(next);
}

/** Records that the user stopped the container (no restart follows); resolves to its state, undefined when it is gone. */
async function markStoppedByUser(store: Store, id: string): Promise<ContainerState | undefined> {
  return updateState(store, id, (s) => (s.stoppedByUser ? undefined : { ...s, stoppedByUser: true }));
}

/**
 * Sends `signal` to a running container; resolves to its observed state. Throws ERR_CONTAINER_NOT_RUNNING otherwise.
 * KILL or the container's stop signal ends a restart policy's restarts, as Docker's kill does.
 */
export async function killContainer(entry: ContainerEntry, signal: Signal): Promise<ContainerState> {
  let current = entry.state;
  if (current?.restartPolicy && (signal.name === 'SIGKILL' || signal.name === stopSignalOf(current).name)) {
    // The store is the one the entry was listed from: containers/<id> under its root.
    current = await markStoppedByUser(new Store(dirname(dirname(entry.dir))), entry.id);
  }
  const state = current ? observe(current) : undefined;
  if (!state || !isRunning(state)) {
    throw new ConveyorError('ERR_CONTAINER_NOT_RUNNING', `container ${entry.id.slice(0, 12)} is not running`, {
      hint: state ? `its status is ${state.status}` : 'it has no state: remove it with ctr-rm',
    });
  }
  await runtimeKill(runtimeOf(state), state.id, signal.arg);
  return state;
}
