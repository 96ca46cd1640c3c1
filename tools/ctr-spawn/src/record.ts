/**
 * The record to run and the overlay it runs on: the first `rootfs` or
 * `mount` record of the input (taken as soon as its line arrives: the input's
 * end is not awaited); for a rootfs record a new container directory and an
 * ephemeral overlay of its layers, mounted when the caller asks (beside the
 * network), for a mount record the live overlay-mount it names.
 * Records may be forged: the store and every path are checked
 * (lib-common/overlay/record-paths) before anything is mounted or run.
 *
 * Failure: ERR_INPUT_RECORD (no usable record, forged or bad fields, unsafe
 * store), ERR_UPSTREAM_FAILED (no record but an upstream `error` record: it
 * was passed on, nothing more is said), ERR_MOUNT_FAILED (the overlay could
 * not be mounted: the run's clean-up removes the directory, nothing is left
 * mounted), ERR_MOUNT_NOT_FOUND (a mount record that is not mounted),
 * ERR_SPAWN_FAILED (a container already runs on that mount),
 * ERR_CONTAINER_NAME_IN_USE (--name is taken: nothing is made).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Logger } from '@conveyor/lib-common/log';
import { readLines } from '@conveyor/lib-common/ndjson';
import { pipeline } from '@conveyor/lib-common/pipeline';
import { mountedDriver, type OverlayDriver } from '@conveyor/lib-common/overlay/driver';
import { containerPaths, makeContainerDir, mountContainerRoot, mountsUnder, newContainerId, type ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import { trustedLowerDirs, trustedMountPaths, trustedRecordStore } from '@conveyor/lib-common/overlay/record-paths';
import type { RootfsRecord } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { claimName, holdsName, isRunning, readState, releaseName } from '@conveyor/lib-common/container/state';

/** The first rootfs or mount record of the input; records before it are reported and skipped. */
export async function firstRecord(input: Readable, log: Pick<Logger, 'warn'>): Promise<Record<string, unknown>> {
  for await (const { record, source, line } of readLines(input)) {
    if (record?.type === 'rootfs' || record?.type === 'mount') return record;
    log.warn(`${source}:${line}: skipping a ${JSON.stringify(record?.type)} record: ctr-spawn runs rootfs and mount records`);
  }
  // A failure upstream left nothing to run: its message was said, its exit code is ours.
  throw (
    pipeline.nothingButUpstreamFailure() ??
    new ConveyorError('ERR_INPUT_RECORD', 'no rootfs or mount record on input', {
      hint: 'pipe in layer-unpack or overlay-mount output, e.g. img-ls busybox | layer-unpack | ctr-spawn -- sh',
    })
  );
}

export interface ContainerRoot {
  store: Store;
  paths: ContainerPaths;
  /** The overlay is mounted for this run (a rootfs record) and goes with it. */
  ephemeral: boolean;
  /**
   * Mounts the root (a rootfs record's overlay; a mount record's is there
   * already) and resolves to how it was put together (a mount record's: read
   * from the mount table, not from the record). Called once; its failure
   * leaves the directory to the run's clean-up.
   */
  mount(): Promise<OverlayDriver | undefined>;
}

/**
 * The checked store and the container directory of `record`: made now, with
 * nothing mounted, for a rootfs record (its overlay is mounted by `mount`, so
 * that the caller can set up what else lives in the directory meanwhile: the
 * network namespace), found mounted for a mount record. With `name`, the
 * name is claimed for the container before anything is made
 * (ERR_CONTAINER_NAME_IN_USE when taken) and released again when the
 * directory cannot be made; once it is made, the caller's clean-up owns both.
 */
export async function openContainerRoot(
  record: Record<string, unknown>,
  options: { root: string; runtimeRoot: string; name?: string; rootless?: boolean; overlayDriver?: OverlayDriver; keep?: boolean },
  log: Pick<Logger, 'warn'>,
): Promise<ContainerRoot> {
  const store = await trustedRecordStore(record, options.root, { warn: (message) => log.warn(message) });
  const ephemeral = record.type === 'rootfs';
  if (!ephemeral) {
    const paths = await existingMount(store, record, options.runtimeRoot);
    if (options.name) await claimName(store, options.name, paths.id);
    return { store, paths, ephemeral, mount: () => mountedDriver(paths.merged) };
  }
  const lowerDirs = await trustedLowerDirs(store, record as unknown as RootfsRecord);
  const paths = containerPaths(store, newContainerId());
  const id = paths.id;
  if (options.name) await claimName(store, options.name, id);
  try {
    await makeContainerDir(store, paths);
  } catch (error) {
    if (options.name) await releaseName(store, options.name, id);
    throw error;
  }
  const mount = async () => {
    const driver = await mountContainerRoot(store, lowerDirs, paths, {
      rootless: options.rootless,
      driver: options.overlayDriver,
      // Thrown away with the container, unless --keep keeps its directory (and upper dir) after it.
      volatile: !options.keep,
      onFallback: (failed, reason) => log.warn(`${failed} failed (${reason}); trying the next driver`),
    });
    // A claim whose container had no directory yet could be taken over by a racing claim: now that it has one, make sure it is still ours.
    if (options.name && !(await holdsName(store, options.name, id))) {
      throw new ConveyorError('ERR_CONTAINER_NAME_IN_USE', `the name ${options.name} was taken by another container meanwhile`, {
        hint: 'choose another --name',
      });
    }
    return driver;
  };
  return { store, paths, ephemeral, mount };
}

/**
 * The overlay of a mount record: its paths exactly those its id names in a
 * trusted store (trustedMountPaths), and a live mount there.
 */
async function existingMount(store: Store, record: Record<string, unknown>, runtimeRoot: string): Promise<ContainerPaths> {
  const paths = await trustedMountPaths(store, record);
  const id = paths.id;
  if (!(await mountsUnder(paths.merged)).includes(paths.merged)) {
    throw new ConveyorError('ERR_MOUNT_NOT_FOUND', `${paths.merged} is not mounted`, { hint: 'mount it again: overlay-mount' });
  }
  // One container per mount: a second run would share (and on exit tear down) the first one's state.
  const previous = await readState(store, id).catch(() => undefined);
  if (existsSync(join(runtimeRoot, id)) || (previous && isRunning(previous))) {
    throw new ConveyorError('ERR_SPAWN_FAILED', `container ${id.slice(0, 12)} is already running on this mount`, {
      hint: 'mount another overlay-mount for a second container',
    });
  }
  return paths;
}
