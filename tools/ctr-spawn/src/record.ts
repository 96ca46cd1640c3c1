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
import { LineCutter } from '@conveyor/lib-common/line-cutter';
import { parseRecord } from '@conveyor/lib-common/ndjson';
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

/** Longest input line accepted, as readLines: longer fails as bad input instead of exhausting memory. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

interface ReadRecordOptions {
  /** For messages: `stdin:N`. */
  source?: string;
  /** Where upstream `error` records go (the process's pipeline; tests give their own). */
  pipeline?: Pick<Pipeline, 'passUpstream' | 'nothingButUpstreamFailure' | 'waitingOn'>;
  maxLineBytes?: number;
}

/**
 * The lines of the input as readLines sees them (split at newlines, trimmed, blank ones skipped, the
 * last one without its newline too), each checked as it completes: bad JSON or a line too long is
 * ERR_INPUT_JSON naming `source:N`, an `error` record is passed on to the pipeline, a record of
 * another type is reported and skipped, and the first rootfs or mount record is the answer. Fed
 * chunks of bytes (a line's UTF-8 may be split across them); the chunk may be reused once fed.
 */
class RecordScanner {
  private readonly lines: LineCutter;

  constructor(
    private readonly log: Pick<Logger, 'warn'>,
    private readonly failures: Pick<Pipeline, 'passUpstream'>,
    readonly source: string,
    maxLength: number,
  ) {
    this.lines = new LineCutter(source, maxLength);
  }

  /** The line a read error is reported at: the one being read. */
  get nextLine(): number {
    return this.lines.count + 1;
  }

  /** Scans `chunk[0, length)`; resolves to the record once its line is complete. */
  async feed(chunk: Buffer, length = chunk.length): Promise<Record<string, unknown> | undefined> {
    for (const bytes of this.lines.cut(chunk.subarray(0, length))) {
      const record = await this.take(bytes);
      if (record) return record;
    }
    return undefined;
  }

  /** The input ended: its last line, if it had no newline. */
  async end(): Promise<Record<string, unknown> | undefined> {
    for (const bytes of this.lines.rest()) return this.take(bytes);
    return undefined;
  }

  private async take(bytes: Buffer): Promise<Record<string, unknown> | undefined> {
    const line = this.lines.count;
    const text = bytes.toString('utf8').trim();
    if (text === '') return undefined;
    const record = parseRecord(text, this.source, line);
    if (record.type === 'error') {
      await this.failures.passUpstream(record);
      return undefined;
    }
    if (record.type === 'rootfs' || record.type === 'mount') return record;
    this.log.warn(`${this.source}:${line}: skipping a ${JSON.stringify(record.type)} record: ctr-spawn runs rootfs and mount records`);
    return undefined;
  }
}

function readFailure(scanner: RecordScanner, error: unknown): ConveyorError {
  const { source, nextLine: line } = scanner;
  return new ConveyorError('ERR_INPUT_JSON', `${source}:${line}: cannot read input: ${(error as Error).message}`, { details: { source, line } });
}

/**
 * The first rootfs or mount record of the input stream (a pipe, socket or terminal; records before it
 * are reported and skipped): its chunks scanned as they arrive (RecordScanner), with no line-splitting
 * stream in between, and the stream's end not awaited once the record is there.
 */
export async function firstRecord(input: Readable, log: Pick<Logger, 'warn'>, options: ReadRecordOptions = {}): Promise<Record<string, unknown>> {
  const failures = options.pipeline ?? pipeline;
  const scanner = new RecordScanner(log, failures, options.source ?? 'stdin', options.maxLineBytes ?? MAX_LINE_BYTES);
  failures.waitingOn(input);
  try {
    for await (const chunk of input as AsyncIterable<Buffer | string>) {
      const record = await scanner.feed(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
      if (record) return record;
    }
  } catch (error) {
    if (error instanceof ConveyorError) throw error;
    throw readFailure(scanner, error);
  }
  const record = await scanner.end();
  if (record) return record;
  throw noRecord(failures);
}

/**
 * firstRecord for input that never blocks (a regular file: stdin redirected from one, --record FILE):
 * read with readSync, no stream at all. Not for a pipe, socket or terminal: a read there waits for the
 * producer with the event loop (and its signal handlers) stopped.
 */
export async function firstRecordSync(
  fd: number,
  log: Pick<Logger, 'warn'>,
  options: ReadRecordOptions & { chunkBytes?: number } = {},
): Promise<Record<string, unknown>> {
  const failures = options.pipeline ?? pipeline;
  const scanner = new RecordScanner(log, failures, options.source ?? 'stdin', options.maxLineBytes ?? MAX_LINE_BYTES);
  const chunk = Buffer.allocUnsafe(options.chunkBytes ?? 64 * 1024);
  for (;;) {
    let read: number;
    try {
      read = readSync(fd, chunk, 0, chunk.length, null);
    } catch (error) {
      throw readFailure(scanner, error);
    }
    if (read === 0) break;
    const record = await scanner.feed(chunk, read);
    if (record) return record;
  }
  const record = await scanner.end();
  if (record) return record;
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
