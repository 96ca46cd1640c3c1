/**
 * overlay-mount's work: `rootfs` records in, `mount` records out; with
 * unmount, `mount` records (or ids) in and their overlays torn down. Library
 * code: takes streams and options, never touches `process`.
 */
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readLines, type RecordSink } from '@conveyor/lib-common/ndjson';
import type { OverlayDriver } from '@conveyor/lib-common/overlay/driver';
import { mountOverlay, removeContainer } from '@conveyor/lib-common/overlay/mount';
import { trustedLowerDirs, trustedMountPaths, trustedRecordStore } from '@conveyor/lib-common/overlay/record-paths';
import { badRecord, RECORD_VERSION, type MountRecord, type RootfsRecord } from '@conveyor/lib-common/records';
import { isContainerId, type Store } from '@conveyor/lib-common/store';
import { CONTAINER_NAME, isRunning, readState, resolveContainer } from '@conveyor/lib-common/container/state';

export interface MountOptions {
  /** Store root used when a record carries none. */
  root: string;
  /** Always name lower dirs through `<store>/l` short links. */
  forceLinks?: boolean;
  /** Called after each mount or unmount, for a message on stderr. */
  onDone?: (what: 'mounted' | 'unmounted', id: string, path: string) => void;
  /** Warnings that do not stop the work (a store open to other users, closed now). */
  warn?: (message: string) => void;
  /** Rootless (inside the user's namespace): the fallback drivers of overlay/driver.ts. */
  rootless?: boolean;
  /** CONVEYOR_OVERLAY_DRIVER: this driver and no other. */
  driver?: OverlayDriver;
}

/**
 * Mounts one rootfs record and describes the result as a mount record. The
 * record's store and lower dirs are checked first (records may be forged):
 * only layers unpacked in a trusted store are mounted.
 */
async function mountRootfs(record: RootfsRecord, options: MountOptions): Promise<MountRecord> {
  const store = await trustedRecordStore(record as unknown as Record<string, unknown>, options.root, { warn: options.warn });
  const lowerDirs = await trustedLowerDirs(store, record);
  const paths = await mountOverlay(store, lowerDirs, {
    forceLinks: options.forceLinks,
    rootless: options.rootless,
    driver: options.driver,
    onFallback: (driver, reason) => options.warn?.(`${driver} failed (${reason}); trying the next driver`),
  });
  const { type: _type, v: _v, ...rest } = record;
  return {
    type: 'mount',
    v: RECORD_VERSION,
    ...rest,
    store: store.root,
    id: paths.id,
    containerDir: paths.containerDir,
    target: paths.merged,
    upper: paths.upper,
    work: paths.work,
    driver: paths.driver,
  };
}

/** Mounts every rootfs record of `input`; other records pass through unchanged. */
export async function mountStream(input: Readable, out: RecordSink, options: MountOptions): Promise<number> {
  let mounted = 0;
  for await (const { record } of readLines(input)) {
    if (record?.type === 'rootfs') {
      const result = await mountRootfs(record as unknown as RootfsRecord, options);
      options.onDone?.('mounted', result.id, result.target);
      await out.write(result);
      mounted++;
    } else {
      await out.write(record!);
    }
  }
  return mounted;
}

/**
 * Unmounts a container's overlay and removes its directory. Refuses
 * (ERR_CONTAINER_RUNNING, nothing touched) while a container runs on it:
 * removing its state, log and upper dir under it would leave it serving from
 * a deleted tree that no tool can see or stop.
 */
export async function unmountId(store: Store, id: string, options: MountOptions): Promise<void> {
  if (!isContainerId(id)) throw new ConveyorError('ERR_USAGE', `not a container id: ${JSON.stringify(id)}`, { hint: 'give the 64-hex id of a mount record' });
  const state = await readState(store, id).catch(() => undefined);
  if (state && isRunning(state)) {
    throw new ConveyorError('ERR_CONTAINER_RUNNING', `container ${state.name ?? id.slice(0, 12)} is running on the mount ${id.slice(0, 12)}`, {
      hint: `stop it first: ctr-stop ${state.name ?? id.slice(0, 12)}`,
    });
  }
  await removeContainer(store, id);
  options.onDone?.('unmounted', id, store.containerDir(id));
}

/**
 * Unmounts the overlay named by `query`: a 64-hex id as it is (an overlay
 * already gone is not an error), or the name or unique id prefix of a
 * container in the store (ERR_CONTAINER_NOT_FOUND, ERR_CONTAINER_AMBIGUOUS;
 * ERR_USAGE for what can be neither).
 */
export async function unmountQuery(store: Store, query: string, options: MountOptions): Promise<void> {
  if (!isContainerId(query) && !CONTAINER_NAME.test(query)) {
    throw new ConveyorError('ERR_USAGE', `not a container id, name or id prefix: ${JSON.stringify(query)}`, { hint: 'give the 64-hex id of a mount record' });
  }
  const id = isContainerId(query) ? query : (await resolveContainer(store, query)).id;
  await unmountId(store, id, options);
}

/**
 * Unmounts the overlay of every mount record of `input` (records of other
 * types, including containers, pass through unchanged).
 */
export async function unmountStream(input: Readable, out: RecordSink, options: MountOptions): Promise<number> {
  let count = 0;
  for await (const { record, source, line } of readLines(input)) {
    if (record?.type === 'mount') {
      const id = record.id;
      if (typeof id !== 'string') throw badRecord(`${source}:${line}`, 'mount record without id');
      const store = await trustedRecordStore(record, options.root, { warn: options.warn });
      // Its paths must be the ones its id names, in a trusted store, before anything there is unmounted or removed.
      await trustedMountPaths(store, record, { mustExist: false });
      await unmountId(store, id, options);
      count++;
    } else {
      await out.write(record!);
    }
  }
  return count;
}
