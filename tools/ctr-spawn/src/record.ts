/**
 * The record to run and the overlay it runs on: the first `rootfs` or
 * `mount` record of the input (taken as soon as its line arrives: the input's
 * end is not awaited; a regular file is read without a stream:
 * firstRecordSync); for a rootfs record a new container directory and an
 * ephemeral overlay of its layers, mounted when the caller asks (beside the
 * network) or, where nothing needs it on the host (hostMountReason), left to
 * the runtime as the spec's first mount and looked into through its layers
 * meanwhile; for a mount record the live overlay-mount it names.
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
import { existsSync, readSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Logger } from '@conveyor/lib-common/log';
import { parseRecord, readLines } from '@conveyor/lib-common/ndjson';
import { type Pipeline, pipeline } from '@conveyor/lib-common/pipeline';
import { mountedDriver, type OverlayDriver } from '@conveyor/lib-common/overlay/driver';
import { release } from 'node:os';
import {
  checkLowerDirs,
  containerPaths,
  makeContainerDir,
  mountContainerRoot,
  mountsUnder,
  newContainerId,
  runtimeRootMount,
  type ContainerPaths,
  type RuntimeRootMount,
} from '@conveyor/lib-common/overlay/mount';
import { LayeredRoot } from '@conveyor/lib-common/overlay/layered';
import type { Root } from '@conveyor/lib-common/container/rootfs';
import { trustedLowerDirs, trustedMountPaths, trustedRecordStore } from '@conveyor/lib-common/overlay/record-paths';
import type { RootfsRecord } from '@conveyor/lib-common/records';
import { assertTrustedStore, type Store } from '@conveyor/lib-common/store';
import { claimName, holdsName, isRunning, readState, releaseName } from '@conveyor/lib-common/container/state';

/** The first rootfs or mount record of the input; records before it are reported and skipped. */
export async function firstRecord(input: Readable, log: Pick<Logger, 'warn'>, failures: Pipeline = pipeline): Promise<Record<string, unknown>> {
  for await (const { record, source, line } of readLines(input, { pipeline: failures })) {
    if (record?.type === 'rootfs' || record?.type === 'mount') return record;
    log.warn(`${source}:${line}: skipping a ${JSON.stringify(record?.type)} record: ctr-spawn runs rootfs and mount records`);
  }
  throw noRecord(failures);
}

/** Longest input line accepted, as readLines: longer fails as bad input instead of exhausting memory. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;
const NEWLINE = 0x0a;

/**
 * firstRecord for input that never blocks (a regular file: stdin redirected from one, --record FILE):
 * read with readSync, no stream, no split2. The same lines as readLines sees (blank ones skipped, the
 * last one without its newline too), the same errors (`source:N` bad JSON, a line too long, a read
 * error), `error` records passed on to the pipeline, records before the first rootfs or mount record
 * reported and skipped, and reading stops at that record. Not for a pipe, socket or terminal: a read
 * there waits for the producer with the event loop (and its signal handlers) stopped.
 */
export async function firstRecordSync(
  fd: number,
  log: Pick<Logger, 'warn'>,
  options: { source?: string; pipeline?: Pick<Pipeline, 'passUpstream' | 'nothingButUpstreamFailure'>; chunkBytes?: number; maxLineBytes?: number } = {},
): Promise<Record<string, unknown>> {
  const source = options.source ?? 'stdin';
  const failures = options.pipeline ?? pipeline;
  const maxLength = options.maxLineBytes ?? MAX_LINE_BYTES;
  const chunk = Buffer.allocUnsafe(options.chunkBytes ?? 64 * 1024);
  let line = 0;
  // The bytes of the line read so far (no newline in them yet).
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  // One complete line: the record to run, or undefined to read on.
  const take = async (bytes: Buffer): Promise<Record<string, unknown> | undefined> => {
    line++;
    if (bytes.length > maxLength) {
      throw new ConveyorError('ERR_INPUT_JSON', `${source}:${line}: line longer than ${maxLength} bytes`, { details: { source, line } });
    }
    const text = bytes.toString('utf8').trim();
    if (text === '') return undefined;
    const record = parseRecord(text, source, line);
    if (record.type === 'error') {
      await failures.passUpstream(record);
      return undefined;
    }
    if (record.type === 'rootfs' || record.type === 'mount') return record;
    log.warn(`${source}:${line}: skipping a ${JSON.stringify(record.type)} record: ctr-spawn runs rootfs and mount records`);
    return undefined;
  };
  for (;;) {
    let read: number;
    try {
      read = readSync(fd, chunk, 0, chunk.length, null);
    } catch (error) {
      throw new ConveyorError('ERR_INPUT_JSON', `${source}:${line + 1}: cannot read input: ${(error as Error).message}`, {
        details: { source, line: line + 1 },
      });
    }
    if (read === 0) break;
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE, 0); end !== -1 && end < read; end = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, end);
      const bytes = pendingBytes === 0 ? piece : Buffer.concat([...pending, piece]);
      pending = [];
      pendingBytes = 0;
      start = end + 1;
      const record = await take(bytes);
      if (record) return record;
    }
    if (start < read) {
      // Copied: the chunk is read into again.
      pending.push(Buffer.from(chunk.subarray(start, read)));
      pendingBytes += read - start;
      if (pendingBytes > maxLength) {
        throw new ConveyorError('ERR_INPUT_JSON', `${source}:${line + 1}: line longer than ${maxLength} bytes`, { details: { source, line: line + 1 } });
      }
    }
  }
  if (pendingBytes > 0) {
    const record = await take(Buffer.concat(pending));
    if (record) return record;
  }
  throw noRecord(failures);
}

/** The failure of input that ended without a record to run. */
function noRecord(failures: Pick<Pipeline, 'nothingButUpstreamFailure'>): Error {
  // A failure upstream left nothing to run: its message was said, its exit code is ours.
  return (
    failures.nothingButUpstreamFailure() ??
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
   * The overlay as the runtime mounts it (the spec's first mount), when it is not mounted here:
   * then nothing is mounted on the host, merged stays an empty directory (the spec's root.path),
   * and the overlay lives in the container's mount namespace only, gone with it.
   */
  runtimeMount?: RuntimeRootMount;
  /** Where the image's files are looked up before the start: merged, or its layers when the runtime mounts them (overlay/layered.ts). */
  tree: Root;
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
/** What decides who mounts a rootfs record's overlay (hostMountReason). */
export interface RootMountFacts {
  rootless?: boolean;
  overlayDriver?: OverlayDriver;
  detach?: boolean;
  printSpec?: boolean;
  specFile?: string;
  /** A volume is seeded from the image (volumes.ts seedsVolumes): cp copies from a mounted tree. */
  seedsVolume?: boolean;
}

/**
 * Why a rootfs record's overlay is mounted here rather than by the runtime (undefined: the runtime
 * may mount it, if its options fit in one mount: runtimeRootMount): rootless (the keeper's namespace,
 * userxattr, fuse-overlayfs and copy fallbacks), a forced driver, a detached
 * container (its supervisor's restarts, ctr-exec, img-export and the other tools that look into a
 * running container by its merged dir), --print-spec and --spec (a spec that names this run's root
 * only), and a volume seeded from the image (cp copies a mounted tree). Pure.
 */
export function hostMountReason(facts: RootMountFacts): string | undefined {
  if (facts.rootless) return 'rootless';
  // CONVEYOR_OVERLAY_DRIVER, even `overlay`: mounted here with that driver (the escape hatch, and the A/B of this choice).
  if (facts.overlayDriver !== undefined) return `CONVEYOR_OVERLAY_DRIVER=${facts.overlayDriver}`;
  if (facts.detach) return 'detached';
  if (facts.printSpec) return '--print-spec';
  if (facts.specFile !== undefined) return '--spec';
  if (facts.seedsVolume) return 'a volume seeded from the image';
  return undefined;
}

/**
 * The --root store's safety check (assertTrustedStore), begun before the record is read: it reads
 * and changes nothing, and a record of that store (layer-unpack's, as a rule) then waits for no
 * check of its own (openContainerRoot `rootChecked`). Its failure is the record's, when one comes.
 */
export function checkRootStore(root: string): Promise<void> {
  const checked = assertTrustedStore(resolve(root));
  checked.catch(() => undefined); // awaited, and reported, only once a record names this store
  return checked;
}

export async function openContainerRoot(
  record: Record<string, unknown>,
  options: {
    root: string;
    runtimeRoot: string;
    name?: string;
    rootless?: boolean;
    overlayDriver?: OverlayDriver;
    keep?: boolean;
    hostMount?: boolean;
    /** checkRootStore(root), begun earlier. */
    rootChecked?: Promise<void>;
  },
  log: Pick<Logger, 'warn'>,
): Promise<ContainerRoot> {
  const store = await trustedRecordStore(record, options.root, { warn: (message) => log.warn(message) }, options.rootChecked);
  const ephemeral = record.type === 'rootfs';
  if (!ephemeral) {
    const paths = await existingMount(store, record, options.runtimeRoot);
    if (options.name) await claimName(store, options.name, paths.id);
    return { store, paths, ephemeral, tree: paths.merged, mount: () => mountedDriver(paths.merged) };
  }
  const lowerDirs = await trustedLowerDirs(store, record as unknown as RootfsRecord);
  const paths = containerPaths(store, newContainerId());
  const id = paths.id;
  // Thrown away with the container, unless --keep keeps its directory (and upper dir) after it.
  const volatile = !options.keep;
  // The options come from the store's paths (trustedLowerDirs, the id's directory), never from the record.
  const runtimeMount = options.hostMount ? undefined : runtimeRootMount(store, lowerDirs, paths, { volatile, release: release() });
  if (options.name) await claimName(store, options.name, id);
  try {
    await makeContainerDir(store, paths);
  } catch (error) {
    if (options.name) await releaseName(store, options.name, id);
    throw error;
  }
  const mount = async () => {
    let driver: OverlayDriver;
    if (runtimeMount) {
      // The runtime mounts it: only what a mount here would have refused is refused here.
      await checkLowerDirs(lowerDirs);
      driver = 'overlay';
    } else {
      driver = await mountContainerRoot(store, lowerDirs, paths, {
        rootless: options.rootless,
        driver: options.overlayDriver,
        volatile,
        onFallback: (failed, reason) => log.warn(`${failed} failed (${reason}); trying the next driver`),
      });
    }
    // A claim whose container had no directory yet could be taken over by a racing claim: now that it has one, make sure it is still ours.
    if (options.name && !(await holdsName(store, options.name, id))) {
      throw new ConveyorError('ERR_CONTAINER_NAME_IN_USE', `the name ${options.name} was taken by another container meanwhile`, {
        hint: 'choose another --name',
      });
    }
    return driver;
  };
  const tree = runtimeMount ? new LayeredRoot([...lowerDirs].reverse(), paths.merged) : paths.merged;
  return { store, paths, ephemeral, runtimeMount, tree, mount };
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
