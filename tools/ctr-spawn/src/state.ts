/**
 * What ctr-spawn records about a container in state.json
 * (lib-common/container/state): the first state, written before the runtime
 * runs (status `created`, ctr-spawn itself as the owner, so a ctr-spawn killed
 * at that moment leaves a container that observe() reports exited and ctr-rm
 * removes), the end of a run (exit code, signal, OOM kill), and the
 * `container` record printed from a state. Pure functions.
 *
 * Failure: none (the caller writes the state).
 */
import { constants as osConstants } from 'node:os';
import type { ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import { SHA256_DIGEST } from '@conveyor/lib-common/digest';
import { type PortMapping, RECORD_VERSION } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import type { LogLimits } from '@conveyor/lib-common/container/log';
import type { ContainerState, ProcessIdentity, RestartPolicy } from '@conveyor/lib-common/container/state';
import type { Runtime } from '@conveyor/lib-common/container/runtime';
import { specVolumes } from './volumes.js';

export interface StateInput {
  record: Record<string, unknown>;
  spec: Record<string, unknown>;
  runtime: Runtime;
  store: Store;
  paths: ContainerPaths;
  cgroupsPath: string;
  ephemeral: boolean;
  /** The overlay driver of its root (record.ts ContainerRoot.driver). */
  driver?: 'overlay' | 'fuse-overlayfs' | 'copy';
  /** It runs rootless, in the keeper's user namespace. */
  rootless?: boolean;
  name?: string;
  /** --net as set up: the `network` field (network/index.ts NetworkSetup.label). */
  network?: string;
  /** The published ports, host ports resolved (a foreground run's forwarder; a detached one's supervisor records its own). */
  ports?: PortMapping[];
  keep: boolean;
  autoRemove: boolean;
  /** --restart with -d (`no` is not recorded). */
  restartPolicy?: RestartPolicy;
  /** The process that owns the container until a supervisor takes it over. */
  owner: ProcessIdentity;
  /** Set for a detached container: where its output goes. */
  log?: { path: string; limits: LogLimits };
  now?: Date;
}

/** The image a record names: `image` as `docker ps` shows it (its reference, else its digest) and `imageDigest`. */
function imageFields(record: Record<string, unknown>): { image?: string; imageDigest?: string } {
  const ref = typeof record.ref === 'string' && record.ref !== '' ? record.ref : undefined;
  const digest = typeof record.digest === 'string' && SHA256_DIGEST.test(record.digest) ? record.digest : undefined;
  const image = ref ?? digest;
  return { ...(image ? { image } : {}), ...(digest ? { imageDigest: digest } : {}) };
}

/**
 * `date` as Date#toISOString writes it (`2026-11-30T20:07:56.123Z`), from its UTC fields: V8 loads the local time
 * zone (/etc/localtime, ICU) at a process's first toISOString, about 1 ms of ctr-spawn's start (issue 17), where
 * these fields need none. Years outside 0-9999 (and an invalid date, which throws) are toISOString's own.
 */
export function isoTimestamp(date: Date): string {
  const year = date.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) return date.toISOString();
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const day = `${pad(year, 4)}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}`;
  return `${day}T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(date.getUTCMilliseconds(), 3)}Z`;
}

/** The state.json written before the runtime runs. */
export function initialState(input: StateInput): ContainerState {
  const { record, spec, paths } = input;
  const config = (record.config && typeof record.config === 'object' ? record.config : {}) as { StopSignal?: unknown };
  const args = (spec.process as { args?: unknown } | undefined)?.args;
  return {
    type: 'container',
    v: RECORD_VERSION,
    id: paths.id,
    ...(input.name ? { name: input.name } : {}),
    ...imageFields(record),
    status: 'created',
    createdAt: isoTimestamp(input.now ?? new Date()),
    bundle: paths.containerDir,
    store: input.store.root,
    runtime: input.runtime.runtime,
    runtimeRoot: input.runtime.runtimeRoot,
    cgroupsPath: input.cgroupsPath,
    ephemeralMount: input.ephemeral,
    rootfs: paths.merged,
    ...(input.driver ? { driver: input.driver } : {}),
    ...(input.rootless ? { rootless: true } : {}),
    supervisor: input.owner,
    ...(input.network ? { network: input.network } : {}),
    ...(input.ports?.length ? { ports: input.ports } : {}),
    ...(typeof config.StopSignal === 'string' && config.StopSignal !== '' ? { stopSignal: config.StopSignal } : {}),
    ...(input.autoRemove ? { autoRemove: true } : {}),
    ...(input.keep ? { keep: true } : {}),
    ...(input.restartPolicy && input.restartPolicy.name !== 'no' ? { restartPolicy: input.restartPolicy } : {}),
    ...(Array.isArray(args) ? { command: args.map(String) } : {}),
    ...volumesField(input.store, spec),
    ...(input.log ? { log: input.log.path, logMaxSize: input.log.limits.maxSize, logMaxFiles: input.log.limits.maxFiles } : {}),
  };
}

/** The volumes its spec mounts, so vol-ls shows who uses them and vol-rm refuses them. */
function volumesField(store: Store, spec: Record<string, unknown>): { volumes?: string[] } {
  const volumes = specVolumes(store, spec);
  return volumes.length > 0 ? { volumes } : {};
}

/** How a container ended, from the runtime's exit code (128+N: killed by signal N). */
export interface ContainerEnd {
  exitCode: number;
  signal?: string;
  oomKilled?: boolean;
}

/** The signal name behind an exit code above 128, as shells and Docker report a death by signal. */
export function endOf(exitCode: number, oomKilled = false): ContainerEnd {
  const number = exitCode - 128;
  const signal = number > 0 ? Object.entries(osConstants.signals).find(([, n]) => n === number)?.[0] : undefined;
  return { exitCode, ...(signal ? { signal } : {}), ...(oomKilled ? { oomKilled: true } : {}) };
}

/** The state after the container ended: exited, with its code, and without a pid that may be recycled. */
export function exitedState(state: ContainerState, end: ContainerEnd, now = new Date()): ContainerState {
  const { pid: _pid, pidStartTime: _start, statusDetail: _detail, ...rest } = state;
  return { ...rest, status: 'exited', ...end, finishedAt: isoTimestamp(now) };
}
