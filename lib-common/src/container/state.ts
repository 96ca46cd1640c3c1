/**
 * A container as the control plane knows it: `containers/<id>/state.json`,
 * written by ctr-spawn and the detached container's supervisor, read by
 * ctr-ls, ctr-stop, ctr-kill, ctr-exec, ctr-rm, ctr-logs, ctr-stats, img-rm
 * and img-prune. There is no daemon: the files are the truth, and what they
 * claim is checked against the processes they name (observe), so a crash
 * never leaves a container that looks alive.
 *
 *   containers/<id>/state.json   ContainerState, replaced atomically
 *   containers/<id>/ctr.log      the output of a detached container (log.ts)
 *   names/<name>                 the id holding a name (claimName), one file each
 *
 * Failure: readState throws ERR_STORE_CORRUPT for a state file that is not a
 * container's; resolveContainer throws ERR_CONTAINER_NOT_FOUND or
 * ERR_CONTAINER_AMBIGUOUS; claimName throws ERR_USAGE for a malformed name and
 * ERR_CONTAINER_NAME_IN_USE for a taken one. Missing files are not errors.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SHA256_DIGEST } from '../digest.js';
import { ConveyorError } from '../errors.js';
import { processAlive, withLock } from '../lock.js';
import type { ContainerRecord } from '../records.js';
import { atomicTempPath, isContainerId, mkdirClosed, type Store } from '../store.js';

export const STATE_FILE = 'state.json';
export const LOG_FILE = 'ctr.log';

/** A process, named so that a recycled pid is not mistaken for it (lock.ts's startTime). */
export interface ProcessIdentity {
  pid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat field 22). */
  startTime?: string;
}

/** state.json: the container record plus what the control plane needs to manage it. */
export interface ContainerState extends ContainerRecord {
  /** The OCI runtime binary and its --root. */
  runtime: string;
  runtimeRoot: string;
  cgroupsPath: string;
  /** True when the overlay was made for this run (from a rootfs record) and goes with the container. */
  ephemeralMount: boolean;
  /** The container's root filesystem (the overlay's merged dir). */
  rootfs: string;
  /** The output log (LOG_FILE), for detached containers. */
  log?: string;
  /**
   * The container's owner, whose death makes a `created` or `running` state
   * stale (observe): ctr-spawn in the foreground; for a detached container
   * its supervisor, recorded by ctr-spawn -d in the first write (the
   * supervisor is started before it), so that no moment of a start has a
   * dead owner while a supervisor may still start the container.
   */
  supervisor?: ProcessIdentity;
  /** Start time of `pid`, the container's init as the host sees it. */
  pidStartTime?: string;
  /** The image's StopSignal (default SIGTERM) and the stop timeout in seconds. */
  stopSignal?: string;
  stopTimeout?: number;
  /** --rm: the supervisor removes the container when it ends. */
  autoRemove?: boolean;
  /** --keep: the container directory stays after it ends. */
  keep?: boolean;
  /** The command it runs (entrypoint + cmd, as the spec has it). */
  command?: string[];
  /** Why the status is what it is when it was not recorded by the container's end (`supervisor gone`). */
  statusDetail?: string;
  /** The log's caps (log.ts LogLimits; --log-opt max-size, max-file): bytes per file and files kept. */
  logMaxSize?: number;
  logMaxFiles?: number;
  /** The volumes it mounts, named and anonymous (container/volumes): vol-rm refuses them while it exists. */
  volumes?: string[];
  /** --restart (ctr-spawn -d): what the supervisor does when the container ends; absent means `no`. */
  restartPolicy?: RestartPolicy;
  /** How many times the supervisor has restarted it. */
  restartCount?: number;
  /** Set by ctr-stop (and ctr-kill with the stop signal or KILL) before signalling: no restart follows, as after `docker stop`. */
  stoppedByUser?: boolean;
  /** How its root was put together (lib-common/overlay/driver): `overlay`, `fuse-overlayfs` or `copy` (rootless fallbacks). */
  driver?: 'overlay' | 'fuse-overlayfs' | 'copy';
  /**
   * Rootless: it runs in the user namespace of the store's keeper
   * (`<store>/run/userns.json`); its mounts, network namespace file and runc
   * state (`runtimeRoot`, `<store>/runtime` by default) are seen from inside
   * that namespace only. A tool acting on it joins the keeper first (runCli
   * `userNamespace: true`) and calls `runc --root <runtimeRoot>` there.
   * `cgroupsPath` is '' when the user has no delegated cgroup (no limits).
   */
  rootless?: boolean;
}

/** Docker's HostConfig.RestartPolicy: `no`, `on-failure` (at most maximumRetryCount times when given), `always`, `unless-stopped`. */
export interface RestartPolicy {
  name: 'no' | 'on-failure' | 'always' | 'unless-stopped';
  maximumRetryCount?: number;
}

/** One directory under containers/: its state, or none (a ctr-spawn killed before writing one). */
export interface ContainerEntry {
  id: string;
  dir: string;
  state?: ContainerState;
}

/** Docker's container name rule. */
export const CONTAINER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

function namesDir(store: Store): string {
  return join(store.root, 'names');
}

/** Reads a container's state.json; undefined when it has none. */
export async function readState(store: Store, id: string): Promise<ContainerState | undefined> {
  const path = join(store.containerDir(id), STATE_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
  let state: ContainerState;
  try {
    state = JSON.parse(text) as ContainerState;
  } catch (error) {
    throw new ConveyorError('ERR_STORE_CORRUPT', `${path} is not JSON: ${(error as Error).message}`, { hint: 'remove the container with ctr-rm -f' });
  }
  if (state === null || typeof state !== 'object' || state.id !== id || typeof state.status !== 'string') {
    throw new ConveyorError('ERR_STORE_CORRUPT', `${path} is not the state of container ${id}`, { hint: 'remove the container with ctr-rm -f' });
  }
  return state;
}

/**
 * Replaces a container's state.json atomically (a reader sees the old or the
 * new, never half) and durably. `durable: false` skips the fsyncs, for a
 * state that cannot outlive a crash anyway: a foreground run's, whose
 * container directory is garbage after one (the overlay and the process are
 * gone; ctr-rm and img-prune remove a directory whose state is missing or
 * torn).
 */
export async function writeState(store: Store, state: ContainerState, options: { durable?: boolean } = {}): Promise<void> {
  await store.writeFileAtomic(join(store.containerDir(state.id), STATE_FILE), `${JSON.stringify(state, null, 2)}\n`, options);
}

/**
 * writeState without the fsyncs (`durable: false`), in synchronous calls: the temporary file beside
 * state.json (named with `writerPid`, as writeFileAtomic names its own, for the gc) renamed over it.
 * For a foreground run's first state, which ctr-spawn writes with nothing else to do meanwhile: four
 * calls cost less than as many trips through libuv's thread pool (issue 17). ERR_STORE_IO naming the
 * path and the store on failure, with no temporary file left.
 */
export function writeStateSync(store: Store, state: ContainerState, writerPid: number): void {
  const path = join(store.containerDir(state.id), STATE_FILE);
  const temp = atomicTempPath(path, writerPid);
  try {
    writeFileSync(temp, `${JSON.stringify(state, null, 2)}\n`, { flag: 'wx', mode: 0o644 });
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw store.ioError(error, path);
  }
}

/**
 * Read-modify-write of a container's state under its lock, so the supervisor
 * recording an exit and ctr-stop recording a stop do not undo each other.
 * Resolves to the new state, or undefined when the container has none.
 */
export async function updateState(
  store: Store,
  id: string,
  change: (state: ContainerState) => ContainerState | undefined,
): Promise<ContainerState | undefined> {
  return withLock(store.lockPath(`container-${id}`), async () => {
    const state = await readState(store, id);
    if (!state) return undefined;
    const next = change(state);
    if (next) await writeState(store, next);
    return next ?? state;
  });
}

/**
 * Whether process `pid` (started at `started`) still runs: processAlive, but a
 * zombie counts as gone. A killed supervisor stays a zombie until its parent
 * (often pid 1) reaps it, seconds later on some machines.
 */
export function processRuns(pid: number, started?: string): boolean {
  if (!processAlive(pid, started)) return false;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // Gone since processAlive looked, or no /proc (then processAlive asked the kernel).
    return !existsSync('/proc/self/stat');
  }
  const runState = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return runState !== 'Z' && runState !== 'X';
}

/**
 * The state as it is now: a container recorded as created or running whose
 * supervisor (or, without one, whose process) is gone is exited with its code
 * unknown, whatever the file says. Pure but for the process checks.
 */
export function observe(state: ContainerState): ContainerState {
  if (state.status !== 'running' && state.status !== 'created') return state;
  const owner = state.supervisor ?? (state.pid ? { pid: state.pid, startTime: state.pidStartTime } : undefined);
  if (!owner || processRuns(owner.pid, owner.startTime)) return state;
  const { pid: _pid, ...rest } = state;
  return { ...rest, status: 'exited', statusDetail: state.supervisor ? 'supervisor gone; exit code unknown' : 'process gone; exit code unknown' };
}

/**
 * The image a container was made from: its manifest digest and reference,
 * whichever the state has (`imageDigest` and `image`; states written before
 * `imageDigest` existed kept the digest in `image` and the reference in `ref`).
 */
export function imageOf(state: ContainerState): { digest?: string; ref?: string } {
  const digestShaped = (value: unknown): value is string => typeof value === 'string' && SHA256_DIGEST.test(value);
  const digest = digestShaped(state.imageDigest) ? state.imageDigest : digestShaped(state.image) ? state.image : undefined;
  const ref = typeof state.image === 'string' && !digestShaped(state.image) ? state.image : typeof state.ref === 'string' ? state.ref : undefined;
  return { ...(digest ? { digest } : {}), ...(ref ? { ref } : {}) };
}

/**
 * The images containers keep (running or stopped: a container that exists
 * keeps its image, as Docker's), as the garbage collector's roots: digests,
 * or references where a state has no digest. Leftovers without state keep
 * nothing by their state (the gc reads mounted layers itself).
 */
export function imageRoots(entries: ContainerEntry[]): { images: string[]; refs: string[] } {
  const roots = { images: [] as string[], refs: [] as string[] };
  for (const entry of entries) {
    if (!entry.state) continue;
    const { digest, ref } = imageOf(entry.state);
    if (digest) roots.images.push(digest);
    else if (ref) roots.refs.push(ref);
  }
  return roots;
}

/** Whether the container may still be running (its state says so and its owner lives). */
export function isRunning(state: ContainerState): boolean {
  const now = observe(state);
  return now.status === 'running' || now.status === 'created';
}

/** Every container directory of the store, each with its observed state (if it has one). */
export async function listContainers(store: Store, options: { warn?: (message: string) => void } = {}): Promise<ContainerEntry[]> {
  let names: string[];
  try {
    names = await readdir(store.containersDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const entries: ContainerEntry[] = [];
  for (const id of names.sort()) {
    if (!isContainerId(id)) continue;
    let state: ContainerState | undefined;
    try {
      state = await readState(store, id);
    } catch (error) {
      options.warn?.(`container ${id.slice(0, 12)}: ${(error as Error).message}`);
    }
    entries.push({ id, dir: store.containerDir(id), state: state ? observe(state) : undefined });
  }
  return entries;
}

/**
 * Finds a container by full id, name, or unique id prefix (Docker's order),
 * then by a name only its state records (never claimed under names/).
 * Resolves to its entry (state may be undefined for a leftover directory).
 */
export async function resolveContainer(store: Store, query: string): Promise<ContainerEntry> {
  if (typeof query !== 'string' || query === '') throw new ConveyorError('ERR_USAGE', 'empty container id or name');
  const all = await listContainers(store);
  const exact = all.find((entry) => entry.id === query);
  if (exact) return exact;
  if (CONTAINER_NAME.test(query)) {
    const id = await nameHolder(store, query);
    const named = all.find((entry) => entry.id === id);
    if (named) return named;
  }
  const matches = /^[0-9a-f]+$/.test(query) ? all.filter((entry) => entry.id.startsWith(query)) : [];
  if (matches.length === 1) return matches[0];
  if (matches.length > 1) {
    throw new ConveyorError('ERR_CONTAINER_AMBIGUOUS', `${query} matches ${matches.length} containers: ${matches.map((m) => m.id.slice(0, 12)).join(', ')}`, {
      hint: 'give more characters of the id, or the name',
    });
  }
  // Last, the name as the states record it: a container whose name was never
  // claimed under names/ (a ctr-spawn from before names were claimed), when
  // exactly one state has it.
  if (CONTAINER_NAME.test(query)) {
    const named = all.filter((entry) => entry.state?.name === query);
    if (named.length === 1) return named[0];
  }
  throw new ConveyorError('ERR_CONTAINER_NOT_FOUND', `no such container: ${query}`, { hint: 'list them with ctr-ls -a' });
}

/** The id holding `name`, or undefined. */
export async function nameHolder(store: Store, name: string): Promise<string | undefined> {
  if (!CONTAINER_NAME.test(name)) return undefined;
  const text = await readFile(join(namesDir(store), name), 'utf8').catch(() => undefined);
  const id = text?.trim();
  return isContainerId(id) ? id : undefined;
}

/**
 * Gives `name` to container `id`. A name held by a container whose directory
 * is gone (removed, or a crash) is taken over; a live holder is
 * ERR_CONTAINER_NAME_IN_USE, as Docker's "Conflict. The container name is
 * already in use".
 */
export async function claimName(store: Store, name: string, id: string): Promise<void> {
  if (!CONTAINER_NAME.test(name)) {
    throw new ConveyorError('ERR_USAGE', `invalid container name ${JSON.stringify(name)}`, {
      hint: 'a name is 1 to 128 of [a-zA-Z0-9_.-], starting with a letter or digit',
    });
  }
  await mkdirClosed(namesDir(store));
  await withLock(store.lockPath('names'), async () => {
    const holder = await nameHolder(store, name);
    if (holder && holder !== id) {
      const alive = await readdir(store.containerDir(holder)).then(
        () => true,
        () => false,
      );
      if (alive) {
        throw new ConveyorError('ERR_CONTAINER_NAME_IN_USE', `the name ${name} is in use by container ${holder.slice(0, 12)}`, {
          hint: `remove it (ctr-rm ${name}) or choose another --name`,
        });
      }
    }
    // A leading dot: no name can start with one, so the temporary file is nobody's name.
    const temp = join(namesDir(store), `.${name}.${id}.tmp`);
    const handle = await open(temp, 'w', 0o600);
    try {
      await handle.writeFile(`${id}\n`);
    } finally {
      await handle.close();
    }
    await rename(temp, join(namesDir(store), name));
  });
}

/**
 * Whether container `id` still holds `name`, asked under the names lock: a
 * claim made before the container's directory existed may have been taken
 * over (claimName frees the names of containers without a directory), so the
 * claimer asks again once the directory exists. Under the lock, no takeover
 * can be half done while it asks.
 */
export async function holdsName(store: Store, name: string, id: string): Promise<boolean> {
  return withLock(store.lockPath('names'), async () => (await nameHolder(store, name)) === id);
}

/** Frees `name` if container `id` holds it (a later holder's claim is left alone). */
export async function releaseName(store: Store, name: string, id: string): Promise<void> {
  if (!CONTAINER_NAME.test(name)) return;
  await withLock(store.lockPath('names'), async () => {
    if ((await nameHolder(store, name)) === id) await unlink(join(namesDir(store), name)).catch(() => undefined);
  });
}
