/**
 * Clean-up after a run, whatever happened. cleanUp (a foreground run, a
 * detached container that could not start, or one run with --rm whose
 * overlay is not its own): the runtime's state of the container (only when
 * this run started the runtime: never another run's container of the same
 * id), the cgroups it left, and then either the ephemeral overlay with its
 * container directory (a rootfs record) or just the files of the run (a mount
 * record, whose overlay and upper dir stay), and the name. --keep keeps the
 * container directory (and the name); the anonymous volumes it made go with
 * it unless --keep. cleanUpStopped (a detached container
 * that ended): the runtime's state and cgroups go, the overlay is unmounted
 * unless --keep, and the directory with state.json and the log stays for
 * ctr-logs and ctr-rm, as Docker keeps a stopped container.
 *
 * Failure: throws the first error removing the overlay or files; the caller
 * reports it as a warning and keeps the container's own exit code.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { removeContainer, type ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import type { Store } from '@conveyor/lib-common/store';
import { removeCgroups } from '@conveyor/lib-common/container/cgroup';
import { logFiles } from '@conveyor/lib-common/container/log';
import { runtimeDelete, type Runtime } from '@conveyor/lib-common/container/runtime';
import { LOG_FILE, releaseName, STATE_FILE } from '@conveyor/lib-common/container/state';
import { removeAnonymousVolumes } from '@conveyor/lib-common/container/volumes';
import { NETWORK_LOG, tearDownNetwork } from '@conveyor/lib-common/container/network';

/** The runtime's pid file (`runc run --pid-file`): written once the container's process runs. */
export const PID_FILE = 'container.pid';
/** Where the supervisor's own messages go (its stderr). */
export const SUPERVISOR_LOG = 'supervisor.log';
/** The files ctr-spawn writes into a container directory for the runtime. */
export const BUNDLE_FILES = ['config.json', 'runtime.log', 'hostname', 'hosts', 'resolv.conf', PID_FILE, NETWORK_LOG, 'pasta.pid'];

export interface CleanupTarget {
  runtime: Runtime;
  store: Store;
  paths: ContainerPaths;
  cgroupsPath: string;
  ephemeral: boolean;
  keep: boolean;
  /** The name the container holds, released with it. */
  name?: string;
  /** Whether this run started the runtime (asked at clean-up time). */
  runtimeStarted: () => boolean;
  /** A restart follows: the network (namespace, pasta/slirp4netns) stays for it. */
  keepNetwork?: boolean;
}

async function stopRuntime(target: CleanupTarget): Promise<void> {
  const id = target.paths.id;
  if (target.runtimeStarted() && existsSync(join(target.runtime.runtimeRoot, id))) await runtimeDelete(target.runtime, id);
  removeCgroups(target.cgroupsPath);
  // Before the overlay's removal: pasta keeps the namespace mount under the directory busy.
  if (!target.keepNetwork) {
    const warnings = await tearDownNetwork(target.paths.containerDir);
    if (warnings.length > 0) throw new Error(`network teardown: ${warnings.join('; ')}`);
  }
}

export async function cleanUp(target: CleanupTarget): Promise<void> {
  const id = target.paths.id;
  await stopRuntime(target);
  if (target.ephemeral) await removeContainer(target.store, id, { keepDir: target.keep });
  else if (!target.keep) {
    const files = [...BUNDLE_FILES, STATE_FILE, SUPERVISOR_LOG].map((f) => join(target.paths.containerDir, f));
    files.push(...logFiles(join(target.paths.containerDir, LOG_FILE)));
    await Promise.all(files.map((f) => rm(f, { force: true })));
  }
  if (!target.keep && target.name) await releaseName(target.store, target.name, id);
  // The container is gone, so are its anonymous volumes (Docker's --rm); named ones stay.
  if (!target.keep) await removeAnonymousVolumes(target.store, id);
}

export async function cleanUpStopped(target: CleanupTarget): Promise<void> {
  await stopRuntime(target);
  if (target.ephemeral && !target.keep) await removeContainer(target.store, target.paths.id, { keepDir: true });
  await rm(join(target.paths.containerDir, PID_FILE), { force: true });
}
