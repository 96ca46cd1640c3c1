/**
 * The sampling loop of ctr-stats: which containers to watch (those named,
 * or every running one), a sample of each per interval, and one `stats`
 * record per container per interval from the last two samples. A container
 * that ends drops out; without names, containers started meanwhile join.
 * Ends after one round with `stream: false`, or when no container is left.
 *
 * Failure: ERR_CONTAINER_NOT_FOUND / ERR_CONTAINER_AMBIGUOUS for a name that
 * finds no container or several, ERR_CONTAINER_NOT_RUNNING for a named
 * container that is not running, ERR_STORE_CORRUPT for a named container
 * whose state file is not one, all before the first sample; a failing
 * `emit` (stdout closed) ends the loop with its error.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { type StatsRecord, type StatsSample, statsRecord, takeSample } from '@conveyor/lib-common/container/stats';
import { type ContainerState, isRunning, listContainers, observe, readState, resolveContainer } from '@conveyor/lib-common/container/state';
import type { Store } from '@conveyor/lib-common/store';

export interface WatchOptions {
  store: Store;
  /** Containers by name, id or unique id prefix; none: every running container, and those that start later. */
  queries: string[];
  /** Time between samples, milliseconds. */
  intervalMs: number;
  /** Keep sampling (docker stats) or stop after the first record of each (--no-stream). */
  stream: boolean;
  /** The host's memory: the limit shown for a container without one. */
  hostMemory: number;
  /** Receives each round's records (possibly none), in the order the containers were found. */
  emit: (records: StatsRecord[]) => Promise<void>;
  warn: (message: string) => void;
  sleep?: (ms: number) => Promise<void>;
}

interface Watched {
  state: ContainerState;
  last?: StatsSample;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The named containers, each running; throws for the first that is not. */
async function namedTargets(store: Store, queries: string[]): Promise<ContainerState[]> {
  const found = new Map<string, ContainerState>();
  for (const query of queries) {
    const entry = await resolveContainer(store, query);
    // Read again for its error: a listing hides a corrupt state file (ERR_STORE_CORRUPT).
    const state = entry.state ?? (await readState(store, entry.id));
    if (!state || !isRunning(state)) {
      throw new ConveyorError('ERR_CONTAINER_NOT_RUNNING', `container ${query} is not running`, { hint: 'list the running ones with ctr-ls' });
    }
    found.set(entry.id, state);
  }
  return [...found.values()];
}

async function runningContainers(store: Store, warn: (message: string) => void): Promise<ContainerState[]> {
  const entries = await listContainers(store, { warn });
  return entries.flatMap((entry) => (entry.state && isRunning(entry.state) ? [entry.state] : []));
}

/** The container's state now, or undefined once it is not running. */
async function stillRunning(store: Store, id: string): Promise<ContainerState | undefined> {
  const state = await readState(store, id).catch(() => undefined);
  return state && isRunning(state) ? observe(state) : undefined;
}

/** Watches until done; resolves to the exit code (0). */
export async function watchStats(options: WatchOptions): Promise<number> {
  const { store, warn } = options;
  const sleep = options.sleep ?? defaultSleep;
  const discover = options.queries.length === 0;
  const watched = new Map<string, Watched>();
  const initial = discover ? await runningContainers(store, warn) : await namedTargets(store, options.queries);
  for (const state of initial) watched.set(state.id, { state, last: takeSample(state) });
  if (watched.size === 0) {
    await options.emit([]);
    return 0;
  }
  for (;;) {
    await sleep(options.intervalMs);
    const records: StatsRecord[] = [];
    for (const [id, item] of watched) {
      const state = await stillRunning(store, id);
      const sample = state ? takeSample(state) : undefined;
      if (!state || !sample) {
        // Running without a cgroup: a rootless container without a delegated one (docs/rootless.md).
        if (state && !item.last) warn(`container ${state.name ?? id.slice(0, 12)} has no cgroup to read (rootless without a delegated cgroup?): left out`);
        watched.delete(id);
        continue;
      }
      if (item.last) records.push(statsRecord(state, item.last, sample, options.hostMemory, new Date()));
      watched.set(id, { state, last: sample });
    }
    if (discover && options.stream) {
      for (const state of await runningContainers(store, warn)) {
        if (!watched.has(state.id)) watched.set(state.id, { state, last: takeSample(state) });
      }
    }
    await options.emit(records);
    if (!options.stream || watched.size === 0) return 0;
  }
}
