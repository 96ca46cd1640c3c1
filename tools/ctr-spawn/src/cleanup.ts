/**
 * Clean-up after a run, whatever happened. cleanUp (a foreground run, a
 * detached container that could not start, or one run with --rm whose
 * overlay is not its own): the runtime's state of the container (only when
 * this run started the runtime: never another run's container of the same
 * id), the cgroups it left, and then, beside the name's release, either the
 * network helper and the ephemeral overlay with its container directory (a
 * rootfs record: the root and the namespace file in one umount, then the
 * directory removed, or renamed into the store's trash when asked, removed by a
 * later run: lib-common overlay/mount.ts sweepTrash) or the
 * network and just the files of the run (a mount record, whose overlay and
 * upper dir stay). --keep keeps the
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
import { settleAll } from './settle.js';
import { NO_TRACE, type Trace } from './trace.js';
import { NETNS_FILE, NETWORK_LOG, type SignalSender, stopNetworkHelper, tearDownNetwork } from '@conveyor/lib-common/container/network';

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
  /**
   * Whether this run's network may have a helper (pasta, slirp4netns) to stop: false for the modes
   * that never start one (--net none/private, host, container:X), whose clean-up then does not look
   * for its file (an ephemeral directory goes whole). Default true.
   */
  networkHelper?: boolean;
  /** The ephemeral container's directory renamed into the store's trash (a later run removes it) instead of removed now. */
  trash?: boolean;
  /** Signals the network helper (lib-common container/network SignalSender: ctr-spawn's process.kill); kill(1) without. */
  signal?: SignalSender;
  /** The run's phase trace (trace.ts): cleanUp's steps are spans of it. */
  trace?: Trace;
}

/** The runtime's state of the container (when this run started it) and the cgroups it left. */
async function stopContainer(target: CleanupTarget): Promise<void> {
  const id = target.paths.id;
  if (target.runtimeStarted() && existsSync(join(target.runtime.runtimeRoot, id))) await runtimeDelete(target.runtime, id);
  removeCgroups(target.cgroupsPath);
}

function networkWarnings(warnings: string[]): void {
  if (warnings.length > 0) throw new Error(`network teardown: ${warnings.join('; ')}`);
}

async function stopRuntime(target: CleanupTarget): Promise<void> {
  await stopContainer(target);
  // Before the overlay's removal: pasta keeps the namespace mount under the directory busy.
  if (!target.keepNetwork) networkWarnings(await tearDownNetwork(target.paths.containerDir, target.signal));
}

/**
 * Independent steps run together: the helper's stop and the files' removal;
 * the root and the namespace file go in one umount (removeContainer), once
 * the helper that holds the namespace open is gone.
 */
export async function cleanUp(target: CleanupTarget): Promise<void> {
  const { id, containerDir } = target.paths;
  const trace = target.trace ?? NO_TRACE;
  await trace.span('cleanup-runtime', stopContainer(target));
  const released = async () => {
    if (!target.keep && target.name) await releaseName(target.store, target.name, id);
    // The container is gone, so are its anonymous volumes (Docker's --rm); named ones stay.
    if (!target.keep) await removeAnonymousVolumes(target.store, id);
  };
  const removed = async () => {
    if (target.ephemeral) {
      const warnings = await trace.span(
        'cleanup-helper',
        target.networkHelper === false ? Promise.resolve([]) : stopNetworkHelper(containerDir, target.signal),
      );
      // Into the trash (a rename) when asked: the run's exit waits for no directory removal; a later run sweeps it (sweepTrash).
      // Else removed in place, synchronously while small (sync: the mount table too): nothing else is left to do meanwhile.
      await trace.span('cleanup-root', removeContainer(target.store, id, { keepDir: target.keep, trash: target.trash === true, sync: true }));
      // Kept (--keep): the namespace's empty file goes, as tearDownNetwork's removeNetns does.
      if (target.keep) await rm(join(containerDir, NETNS_FILE), { force: true });
      return networkWarnings(warnings);
    }
    const files = target.keep ? [] : [...BUNDLE_FILES, STATE_FILE, SUPERVISOR_LOG].map((f) => join(containerDir, f));
    if (!target.keep) files.push(...logFiles(join(containerDir, LOG_FILE)));
    await Promise.all([tearDownNetwork(containerDir, target.signal).then(networkWarnings), ...files.map((f) => rm(f, { force: true }))]);
  };
  await settleAll([removed(), trace.span('cleanup-release', released())]);
}

export async function cleanUpStopped(target: CleanupTarget): Promise<void> {
  await stopRuntime(target);
  if (target.ephemeral && !target.keep) await removeContainer(target.store, target.paths.id, { keepDir: true });
  await rm(join(target.paths.containerDir, PID_FILE), { force: true });
}
