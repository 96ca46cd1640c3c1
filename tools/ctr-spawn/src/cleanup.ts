/**
 * Clean-up after a run, whatever happened: the runtime's state of the
 * container (only when this run started the runtime: never another run's
 * container of the same id), the cgroups it left, and then either the
 * ephemeral overlay with its container directory (a rootfs record) or just
 * the bundle files (a mount record, whose overlay and upper dir stay).
 * --keep keeps the container directory.
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
import { runtimeDelete, type Runtime } from '@conveyor/lib-common/container/runtime';

/** The files ctr-spawn writes into a container directory for the runtime. */
export const BUNDLE_FILES = ['config.json', 'runtime.log', 'hostname', 'hosts'];

export interface CleanupTarget {
  runtime: Runtime;
  store: Store;
  paths: ContainerPaths;
  cgroupsPath: string;
  ephemeral: boolean;
  keep: boolean;
  /** Whether this run started the runtime (asked at clean-up time). */
  runtimeStarted: () => boolean;
}

export async function cleanUp(target: CleanupTarget): Promise<void> {
  const id = target.paths.id;
  if (target.runtimeStarted() && existsSync(join(target.runtime.runtimeRoot, id))) await runtimeDelete(target.runtime, id);
  removeCgroups(target.cgroupsPath);
  if (target.ephemeral) await removeContainer(target.store, id, { keepDir: target.keep });
  else if (!target.keep) await Promise.all(BUNDLE_FILES.map((f) => rm(join(target.paths.containerDir, f), { force: true })));
}
