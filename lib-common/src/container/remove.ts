/**
 * Removing a container and everything it left: the runtime's state (killing
 * what still runs in it), its cgroups, its network (network.ts: the pasta or
 * slirp4netns process and the namespace mount), every mount under its directory, the
 * directory, and its name (for a leftover without state, any name that
 * points at it), and on request its anonymous volumes. Shared by ctr-rm, the supervisor of a `--rm`
 * container and ctr-spawn's clean-up of leftovers, so that "removed" means
 * the same everywhere. Whether a running container may be removed is the
 * caller's decision (ctr-rm refuses without -f). It works under the
 * container's lock, which a detached container's supervisor holds from its
 * claim to the end of its start: a removal never runs while runc is half
 * started (it would miss the runtime's state and cgroups being made), and a
 * supervisor that comes after it finds no container to start.
 *
 * Failure: throws ERR_MOUNT_FAILED when something under the directory cannot
 * be unmounted (the directory then stays, with its state, so a later ctr-rm
 * can try again); the runtime's and the cgroups' clean-up is best-effort and
 * what it could not do is returned as warnings.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { withLock } from '../lock.js';
import { removeContainer } from '../overlay/mount.js';
import type { Store } from '../store.js';
import { removeCgroups } from './cgroup.js';
import { tearDownNetwork } from './network.js';
import { runtimeDelete } from './runtime.js';
import { CONTAINER_NAME, type ContainerEntry, nameHolder, releaseName } from './state.js';
import { removeAnonymousVolumes } from './volumes.js';

/** Where ctr-spawn keeps runc's state by default, and the cgroup path it gives a container. */
export const DEFAULT_RUNTIME = 'runc';
export const DEFAULT_RUNTIME_ROOT = '/run/conveyor-runc';
export function defaultCgroupsPath(id: string): string {
  return `/conveyor/${id}`;
}

/**
 * Removes the container of `entry` (its state may be missing: a leftover). With
 * `volumes`, the anonymous volumes it created go too (ctr-rm -v, --rm); named
 * volumes always stay. Resolves to warnings.
 */
export async function removeContainerFully(store: Store, entry: ContainerEntry, options: { volumes?: boolean } = {}): Promise<string[]> {
  const { id, state } = entry;
  // Under the container's lock (updateState's): two removals (ctr-rm and a --rm supervisor) take turns,
  // and the second finds nothing left to do instead of failing to unmount what the first unmounted.
  return withLock(store.lockPath(`container-${id}`), async () => {
    const warnings: string[] = [];
    const runtime = { runtime: state?.runtime ?? DEFAULT_RUNTIME, runtimeRoot: state?.runtimeRoot ?? DEFAULT_RUNTIME_ROOT };
    if (existsSync(join(runtime.runtimeRoot, id))) await runtimeDelete(runtime, id);
    const left = removeCgroups(state?.cgroupsPath ?? defaultCgroupsPath(id));
    if (left.length > 0) warnings.push(`cgroups left (still in use?): ${left.join(', ')}`);
    // Its pasta/slirp4netns first: it holds the namespace mount busy (a SIGKILLed supervisor left both).
    warnings.push(...(await tearDownNetwork(entry.dir)));
    // Before the directory: once the container is seen gone, so are its volumes.
    if (options.volumes) await removeAnonymousVolumes(store, id);
    await removeContainer(store, id);
    if (state?.name) await releaseName(store, state.name, id);
    else await releaseNamesOf(store, id);
    return warnings;
  });
}

/**
 * Frees every name `id` holds. A leftover has no state to say its name, but
 * ctr-spawn claims the name before it writes the state, so one may be held.
 */
async function releaseNamesOf(store: Store, id: string): Promise<void> {
  const names = await readdir(join(store.root, 'names')).catch(() => [] as string[]);
  for (const name of names) {
    if (CONTAINER_NAME.test(name) && (await nameHolder(store, name)) === id) await releaseName(store, name, id);
  }
}
