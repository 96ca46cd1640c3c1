/**
 * ctr-rm's work: removing one container (refused while it runs unless
 * forced, then stopped with SIGKILL as `docker rm -f` does) and pruning every
 * stopped container and leftover, as `docker container prune`. Removal itself
 * is lib-common's removeContainerFully: runtime state, cgroups, mounts, the
 * directory and the name, nothing left behind.
 *
 * Rootless, ctr-rm runs inside the store's user-namespace keeper (files
 * owned by subordinate ids, mounts in the keeper's mount namespace). A
 * container made under an earlier keeper that died lives in that keeper's
 * user namespace, which a new keeper has no power over: its processes that
 * run as other ids than the user's cannot be signalled from here (EPERM).
 * From outside any namespace the user can (it owns every namespace it
 * made): so ctr-rm -f run by a user kills outside first and removes inside
 * after (forceRemoveOutside). Run inside a keeper with -f (by hand),
 * it refuses such a container with a ctr-stop hint instead of waiting for a
 * SIGKILL that cannot be sent.
 *
 * A container still `created` (ctr-spawn -d's start under way, its owner
 * alive) has nothing to stop: with -f it is removed at once, under the
 * container's lock that its supervisor holds through the start (see
 * lib-common container/remove.ts).
 *
 * Failure: removeOne throws ERR_CONTAINER_RUNNING for a running container
 * without force (or one this process may not signal), and what removeContainerFully throws (ERR_MOUNT_FAILED: the
 * directory then stays for another try). prune reports each failure through
 * onError and goes on.
 */
import { stat } from 'node:fs/promises';
import { ConveyorError, EXIT } from '@conveyor/lib-common/errors';
import { RECORD_VERSION } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { removeContainerFully } from '@conveyor/lib-common/container/remove';
import { type ActOptions, actOnTargets } from '@conveyor/lib-common/container/targets';
import { type ContainerEntry, isRunning, listContainers, observe, processRuns, readState } from '@conveyor/lib-common/container/state';
import { runProcess } from '@conveyor/lib-common/subprocess';
import { parseSignal, stopContainer } from '@conveyor/lib-common/container/stop';

/** What ctr-rm prints for each container it removed. */
export interface RemovedRecord {
  type: 'removed';
  v: number;
  id: string;
  name?: string;
  store: string;
}

/**
 * How old a directory without state must be before prune takes it for a
 * leftover: younger, it may be a ctr-spawn between making the directory and
 * writing the state.
 */
export const LEFTOVER_MIN_AGE_MS = 60_000;
/** How long a supervisor gets to finish (record the end, unmount) before the removal goes ahead without it. */
const SUPERVISOR_EXIT_MS = 5_000;

export interface RemoveOptions {
  /** Stop a running container first (SIGKILL). */
  force?: boolean;
  /** Warnings (cgroups that could not be removed). */
  warn?: (message: string) => void;
  /** -v: the anonymous volumes the container made go too (named volumes stay, as docker rm -v). */
  volumes?: boolean;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits for the container's supervisor (or foreground ctr-spawn) to exit, so that its clean-up does not race ours. */
async function supervisorGone(store: Store, id: string): Promise<void> {
  const deadline = Date.now() + SUPERVISOR_EXIT_MS;
  for (;;) {
    const owner = (await readState(store, id).catch(() => undefined))?.supervisor;
    if (!owner || !processRuns(owner.pid, owner.startTime) || Date.now() >= deadline) return;
    await sleep(50);
  }
}

/** Whether this process may signal `pid` (kill -0): false only for EPERM, see the header. */
async function maySignal(pid: number): Promise<boolean> {
  const probe = await runProcess('kill', ['-0', String(pid)], { stdout: 'ignore', stderr: 'pipe' });
  return !probe.failed || !/not permitted/i.test(probe.stderr);
}

/** Removes one container; resolves to its `removed` record. */
export async function removeOne(store: Store, entry: ContainerEntry, options: RemoveOptions = {}): Promise<RemovedRecord> {
  const short = entry.id.slice(0, 12);
  // Created and its owner alive: a detached start not done, no process to stop nor a supervisor to wait
  // for (it may wait for its order). Its supervisor claims and starts it under the container's lock,
  // which removeContainerFully takes: the removal comes before the start (which then starts nothing)
  // or after it (and the runtime's delete kills what started).
  const starting = entry.state !== undefined && observe(entry.state).status === 'created';
  if (entry.state && isRunning(entry.state)) {
    if (!options.force) {
      throw new ConveyorError('ERR_CONTAINER_RUNNING', `container ${short} is running`, {
        hint: `stop it first (ctr-stop ${entry.state.name ?? short}) or remove it with -f`,
      });
    }
    const { pid, pidStartTime } = entry.state;
    if (pid && processRuns(pid, pidStartTime) && !(await maySignal(pid))) {
      throw new ConveyorError('ERR_CONTAINER_RUNNING', `container ${short} is running in a user namespace this process cannot signal`, {
        hint: `its namespace keeper is gone: stop it with ctr-stop ${entry.state.name ?? short}, then ctr-rm it`,
      });
    }
    if (!starting) await stopContainer(store, entry, { signal: parseSignal('KILL'), timeoutSeconds: 0 });
  }
  if (entry.state && !starting) await supervisorGone(store, entry.id);
  // Re-read: the supervisor may have recorded more (or removed it, with --rm).
  const state = (await readState(store, entry.id).catch(() => undefined)) ?? entry.state;
  const warnings = await removeContainerFully(store, { ...entry, state }, { volumes: options.volumes });
  for (const warning of warnings) options.warn?.(`container ${short}: ${warning}`);
  return { type: 'removed', v: RECORD_VERSION, id: entry.id, ...(state?.name ? { name: state.name } : {}), store: store.root };
}

/**
 * ctr-rm -f's first step when a user runs it, outside the namespace: a
 * running container is killed (SIGKILL, as `docker rm -f`) and waited for.
 */
export async function killForRemoval(store: Store, entry: ContainerEntry): Promise<void> {
  // A created one has no process yet (see removeOne): the removal inside takes care of it.
  if (entry.state && isRunning(entry.state) && observe(entry.state).status !== 'created')
    await stopContainer(store, entry, { signal: parseSignal('KILL'), timeoutSeconds: 0 });
}

/**
 * `ctr-rm -f` run by a user (see the header): every target is resolved and
 * killed from outside the namespace, then `removeInside` (cli.ts: this tool
 * again, inside the keeper, without -f) removes the ones killed. A target
 * that cannot be resolved or killed is reported as actOnTargets does and the
 * others still go. Resolves to the first failure's exit code, else
 * removeInside's; removeInside is not called when nothing was killed.
 */
export async function forceRemoveOutside(targets: Omit<ActOptions, 'act' | 'concurrency'>, removeInside: (ids: string[]) => Promise<number>): Promise<number> {
  const ids: string[] = [];
  const code = await actOnTargets({
    ...targets,
    act: async (entry) => {
      await killForRemoval(targets.store, entry);
      ids.push(entry.id);
      return undefined;
    },
  });
  if (ids.length === 0) return code;
  const inside = await removeInside(ids);
  return code !== EXIT.OK ? code : inside;
}

/** Whether an entry is for prune: stopped, or a directory without state old enough to be a leftover. */
async function prunable(entry: ContainerEntry, now: number): Promise<boolean> {
  if (entry.state) return !isRunning(entry.state);
  const info = await stat(entry.dir).catch(() => undefined);
  return info !== undefined && now - info.mtimeMs >= LEFTOVER_MIN_AGE_MS;
}

/**
 * Removes every stopped container and every leftover; `onRemoved` sees each
 * record, `onError` each failure. Resolves to the number of failures.
 */
export async function prune(
  store: Store,
  handlers: { onRemoved: (record: RemovedRecord) => Promise<void>; onError: (id: string, error: unknown) => void; warn?: (message: string) => void },
): Promise<number> {
  let failures = 0;
  const now = Date.now();
  for (const entry of await listContainers(store, { warn: handlers.warn })) {
    if (!(await prunable(entry, now))) continue;
    try {
      await handlers.onRemoved(await removeOne(store, entry, { warn: handlers.warn }));
    } catch (error) {
      failures++;
      handlers.onError(entry.id, error);
    }
  }
  return failures;
}
