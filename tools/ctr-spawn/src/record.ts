/**
 * The record to run and the overlay it runs on: the first `rootfs` or
 * `mount` record of the input; for a rootfs record a new ephemeral overlay
 * of its layers, for a mount record the live overlay-mount it names.
 * Records may be forged: the store and every path are checked
 * (lib-common/overlay/record-paths) before anything is mounted or run.
 *
 * Failure: ERR_INPUT_RECORD (no usable record, forged or bad fields, unsafe
 * store), ERR_UPSTREAM_FAILED (no record but an upstream `error` record: it
 * was passed on, nothing more is said), ERR_MOUNT_FAILED (the overlay could
 * not be mounted: nothing is left mounted), ERR_MOUNT_NOT_FOUND (a mount
 * record that is not mounted), ERR_SPAWN_FAILED (a container already runs on that mount),
 * ERR_CONTAINER_NAME_IN_USE (--name is taken: nothing is mounted).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Logger } from '@conveyor/lib-common/log';
import { readLines } from '@conveyor/lib-common/ndjson';
import { pipeline } from '@conveyor/lib-common/pipeline';
import { mountedDriver, type OverlayDriver } from '@conveyor/lib-common/overlay/driver';
import { mountOverlay, mountsUnder, newContainerId, removeContainer, type ContainerPaths } from '@conveyor/lib-common/overlay/mount';
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
  /** The overlay was mounted for this run (a rootfs record) and goes with it. */
  ephemeral: boolean;
  /** How its root was put together (a mount record's: read from the mount table, not from the record). */
  driver?: OverlayDriver;
}

/**
 * The checked store and the overlay of `record`: mounted now for a rootfs
 * record, found for a mount record. With `name`, the name is claimed for the
 * container before anything is mounted (ERR_CONTAINER_NAME_IN_USE when
 * taken) and released again when the overlay cannot be had.
 */
export async function containerRoot(
  record: Record<string, unknown>,
  options: { root: string; runtimeRoot: string; name?: string; rootless?: boolean; overlayDriver?: OverlayDriver },
  log: Pick<Logger, 'warn'>,
): Promise<ContainerRoot> {
  const store = await trustedRecordStore(record, options.root, { warn: (message) => log.warn(message) });
  const ephemeral = record.type === 'rootfs';
  if (!ephemeral) {
    const paths = await existingMount(store, record, options.runtimeRoot);
    if (options.name) await claimName(store, options.name, paths.id);
    return { store, paths, ephemeral, driver: await mountedDriver(paths.merged) };
  }
  const lowerDirs = await trustedLowerDirs(store, record as unknown as RootfsRecord);
  const id = newContainerId();
  if (options.name) await claimName(store, options.name, id);
  try {
    const paths = await mountOverlay(store, lowerDirs, {
      id,
      rootless: options.rootless,
      driver: options.overlayDriver,
      onFallback: (driver, reason) => log.warn(`${driver} failed (${reason}); trying the next driver`),
    });
    // A claim whose container had no directory yet could be taken over by a racing claim: now that it has one, make sure it is still ours.
    if (options.name && !(await holdsName(store, options.name, id))) {
      await removeContainer(store, id);
      throw new ConveyorError('ERR_CONTAINER_NAME_IN_USE', `the name ${options.name} was taken by another container meanwhile`, {
        hint: 'choose another --name',
      });
    }
    return { store, paths, ephemeral, driver: paths.driver };
  } catch (error) {
    if (options.name) await releaseName(store, options.name, id);
    throw error;
  }
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
