/**
 * The record stream: `layer` records start unpacking at once (so unpacking
 * overlaps img-fetch's download of later layers) and are consumed, and so
 * are `download` records, which start a layer from its blob's ingest file
 * while it downloads (committed once a `layer` or `image` record says the
 * blob is in the store: layer-cache.ts ensureLayer); `image`
 * records become `rootfs` records once all their layers are unpacked; every
 * other record passes through unchanged. Output keeps input order.
 * Independent layers unpack in parallel, at most `jobs` at a time.
 *
 * Records may be forged (docs/security.md): every chain ID is recomputed
 * before it names a directory (see layer-cache.ts for why that is enough).
 */
import { resolve } from 'node:path';
import { assertDigest } from '@conveyor/lib-common/digest';
import { ConveyorError, EXIT, toConveyorError } from '@conveyor/lib-common/errors';
import { layerCompression } from '@conveyor/lib-common/mediatypes';
import type { Progress } from '@conveyor/lib-common/log';
import type { InputLine, RecordSink } from '@conveyor/lib-common/ndjson';
import { pipeline } from '@conveyor/lib-common/pipeline';
import { badRecord, RECORD_VERSION, type ImageRecord, type LayerInfo, type RootfsRecord } from '@conveyor/lib-common/records';
import { assertTrustedStore, Store } from '@conveyor/lib-common/store';
import { ImageBudget } from './budget.js';
import type { FlattenOptions, FlattenResult } from './flatten.js';
import type { LayerSource } from './read-layer.js';
import { cleanStaging, ensureLayer, expectedChainID, type ChainedLayer, type EnsuredLayer } from './layer-cache.js';

export interface UnpackOptions {
  /** Store root for records that do not name one. */
  defaultRoot: string;
  /** Flat mode: the one image's layers all go into this directory. */
  flatten?: string;
  jobs: number;
  /** Caps on one layer's file content bytes and tar entries. */
  maxBytes: number;
  maxEntries: number;
  /** Caps on the sum over an image's layers. */
  maxImageBytes: number;
  maxImageEntries: number;
  rootless: boolean;
  /** Rootless in a user namespace: the owners applied for real (apply/applier.ts). */
  ownable?: (uid: number, gid: number) => boolean;
  /** Report a failed image and go on with the next one (exit 1 at the end). */
  keepGoing: boolean;
  pid: number;
  /** Our uid: a --flatten directory with privileged files should be reachable by no one else (exposureWarning). */
  uid: number;
  /** Threads creating files, shared by the layers unpacked at once, at least one each (default 2); 0 = inline. */
  writerThreads?: number;
  log: { warn(message: string): void; info(message: string): void; error(error: ConveyorError): void };
  progress?: Progress;
}

/** A counting semaphore: at most `limit` tasks run at once; a task may give its place up early (`release`). */
export class Limiter {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(task: (release: () => void) => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.queue.push(resolve));
    this.running++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.running--;
      this.queue.shift()?.();
    };
    try {
      return await task(release);
    } finally {
      release();
    }
  }
}

function checkLayerInfo(value: unknown, where: string): LayerInfo {
  const l = value as LayerInfo;
  if (!l || typeof l !== 'object') throw badRecord(where, 'layer is not an object');
  if (typeof l.mediaType !== 'string') throw badRecord(where, 'layer mediaType missing');
  if (layerCompression(l.mediaType) === undefined) {
    throw new ConveyorError('ERR_LAYER_COMPRESSION', `${where}: unsupported layer media type ${JSON.stringify(l.mediaType)}`);
  }
  try {
    assertDigest(l.digest, 'layer digest');
    assertDigest(l.diffID, 'layer diffID');
    assertDigest(l.chainID, 'layer chainID');
  } catch (error) {
    throw badRecord(where, (error as Error).message);
  }
  if (!Number.isSafeInteger(l.size) || l.size < 0) throw badRecord(where, 'layer size is not a non-negative integer');
  return l;
}

function checkStore(store: unknown, where: string): string | undefined {
  if (store !== undefined && (typeof store !== 'string' || !store.startsWith('/'))) throw badRecord(where, 'store is not an absolute path');
  return store;
}

/** An image record whose chain IDs follow from its diff IDs, bottom first. */
function checkImage(record: Record<string, unknown>, where: string): ImageRecord {
  const image = record as unknown as ImageRecord;
  if (!Array.isArray(image.layers)) throw badRecord(where, 'image record has no layers list');
  for (const [i, l] of image.layers.entries()) checkLayerInfo(l, `${where} layer ${i}`);
  chained(image).forEach((l, i) => {
    const expected = expectedChainID(l.parentChainID, l.diffID);
    if (l.chainID !== expected) throw badRecord(where, `layer ${i} chainID ${l.chainID} does not follow from the diff IDs (expected ${expected})`);
  });
  checkStore(image.store, where);
  return image;
}

/** An image's layers with their parents: each one's is the chain ID below it. */
function chained(image: ImageRecord): ChainedLayer[] {
  return image.layers.map((l, i) => (i === 0 ? { ...l, parentChainID: undefined } : { ...l, parentChainID: image.layers[i - 1].chainID }));
}

/**
 * A streamed `layer` record (img-fetch: `index`, `count`, `parentChainID`).
 * Its chain ID must follow from the parent and diff ID it states. The parent
 * is not checked against the other records: a made-up parent only yields a
 * chain ID no real image has, holding the diff it names, and the `image`
 * record that follows recomputes its own chain from its diff IDs.
 */
function checkLayerRecord(record: Record<string, unknown>, where: string): ChainedLayer {
  const layer = checkLayerInfo(record, where) as ChainedLayer;
  const { index, count, parentChainID } = record;
  if (!Number.isSafeInteger(index) || (index as number) < 0) throw badRecord(where, 'layer index is not a non-negative integer');
  if (!Number.isSafeInteger(count) || (count as number) <= (index as number))
    throw badRecord(where, `layer count ${JSON.stringify(count)} is not an integer above its index ${index}`);
  if (index === 0) {
    if (parentChainID !== undefined) throw badRecord(where, 'the bottom layer (index 0) has a parentChainID');
  } else {
    try {
      assertDigest(parentChainID, `layer ${index} parentChainID`);
    } catch (error) {
      throw badRecord(where, (error as Error).message);
    }
  }
  const expected = expectedChainID(parentChainID as string | undefined, layer.diffID);
  if (layer.chainID !== expected) {
    throw badRecord(where, `layer ${index} chainID ${layer.chainID} does not follow from its parentChainID and diffID (expected ${expected})`);
  }
  checkStore(record.store, where);
  return { ...layer, parentChainID: parentChainID as string | undefined };
}

/**
 * The store a record names must be one its owner (root, when we run as root)
 * alone controls: a user-owned store would let that user swap directories for
 * symlinks under root's writes. `--root` and the default store are the
 * caller's own choice and are not second-guessed here.
 */
async function trustStore(path: string, where: string): Promise<void> {
  try {
    await assertTrustedStore(path);
  } catch (error) {
    const err = toConveyorError(error);
    // As in overlay-mount and ctr-spawn: an unsafe store named by a record is a forged record (exit 2).
    const code = err.code === 'ERR_STORE_UNSAFE' ? 'ERR_INPUT_RECORD' : err.code;
    throw new ConveyorError(code, `${where}: record names an unsafe store: ${err.message}`, { hint: err.hint, cause: error });
  }
}

/**
 * The input lines, given `idle`: true when nothing started by earlier lines is pending (input.ts reads
 * synchronously only then).
 */
export type LineInput = (idle: () => boolean) => AsyncIterable<InputLine>;

export async function unpackRecords(input: LineInput, out: RecordSink, opts: UnpackOptions): Promise<number> {
  const limiter = new Limiter(opts.jobs);
  /**
   * Work started by input lines and not settled yet (layer jobs, images, output, staging sweeps): the
   * input is read synchronously only while it is empty, and the run ends once it is.
   */
  const pending = new Set<Promise<unknown>>();
  const track = <T>(work: Promise<T>): Promise<T> => {
    pending.add(work);
    const settled = () => {
      pending.delete(work);
    };
    work.then(settled, settled);
    return work;
  };
  const defaultRoot = resolve(opts.defaultRoot);
  const stores = new Map<string, Promise<Store>>();
  const jobs = new Map<string, Promise<EnsuredLayer>>();
  /** Inflate budgets of the images being unpacked, by store and reference. */
  const budgets = new Map<string, ImageBudget>();
  let exitCode: number = EXIT.OK;
  let flattened = false;
  let fatal: ConveyorError | undefined;
  let output: Promise<void> = Promise.resolve();

  const storeFor = (root: string | undefined, where: string): Promise<Store> => {
    const path = root === undefined ? defaultRoot : resolve(root);
    let store = stores.get(path);
    if (!store) {
      store = (async () => {
        if (path !== defaultRoot) await trustStore(path, where);
        const s = new Store(path);
        // Sweep staging dirs left by dead processes; harmless to race.
        void track(cleanStaging(s)).catch(() => undefined);
        return s;
      })();
      store.catch(() => undefined);
      stores.set(path, store);
    }
    return store;
  };

  // A `layer` record's image is known by its ref; its `image` record comes later and shares the budget.
  const budgetKey = (store: Store, ref: unknown, where: string) => `${store.root}\0${typeof ref === 'string' ? ref : where}`;
  const budgetFor = (key: string): ImageBudget => {
    let budget = budgets.get(key);
    if (!budget) {
      budget = new ImageBudget({ maxBytes: opts.maxImageBytes, maxEntries: opts.maxImageEntries });
      budgets.set(key, budget);
    }
    return budget;
  };

  const progress = opts.progress;
  /**
   * Blobs announced by `download` records, by store and digest: resolved when a `layer` or `image`
   * record says the blob is in the store, rejected when an `error` record or the input's end comes first.
   */
  const blobsIn = new Map<string, { committed: Promise<void>; resolve(): void; reject(error: Error): void }>();
  const blobKey = (root: string, digest: string) => `${root}\0${digest}`;
  const blobIn = (store: Store, digest: string) => {
    let entry = blobsIn.get(blobKey(store.root, digest));
    if (!entry) {
      let resolve!: () => void;
      let reject!: (error: Error) => void;
      const committed = new Promise<void>((yes, no) => {
        resolve = yes;
        reject = no;
      });
      committed.catch(() => undefined);
      entry = { committed, resolve, reject };
      blobsIn.set(blobKey(store.root, digest), entry);
    }
    return entry;
  };
  /** No record will say that the blobs still awaited are in: the layers reading them give up, keeping nothing. */
  const abandonDownloads = (why: string) => {
    for (const [key, blob] of blobsIn) {
      const digest = key.slice(key.indexOf('\0') + 1);
      blob.reject(new ConveyorError('ERR_INPUT_RECORD', `${why} before blob ${digest} was in the store: its layer is not kept`));
    }
    blobsIn.clear();
  };

  /** Unpacks (or reuses) a layer once per store; each image's budget counts it when it is there. */
  const startLayer = (store: Store, layer: ChainedLayer, budget: ImageBudget, growing?: { committed: Promise<void> }): Promise<EnsuredLayer> => {
    // The chain ID was recomputed from the parent and diff ID, so one key is one layer.
    const key = `${store.root}\0${layer.chainID}`;
    let job = jobs.get(key);
    if (!job) {
      // The place is given up once the layer's files are written: its commit waits for a sync
      // while the next layer unpacks, and layers that finish together share one (layer-cache.ts).
      job = limiter.run(async (release) => {
        const id = layer.digest;
        const label = layer.digest.slice(7, 19);
        progress?.start({ id, action: 'unpack', current: 0, total: layer.size, label });
        const result = await ensureLayer(store, layer, {
          rootless: opts.rootless,
          ownable: opts.ownable,
          maxBytes: opts.maxBytes,
          maxEntries: opts.maxEntries,
          budget,
          warn: (m) => opts.log.warn(`layer ${label}: ${m}`),
          pid: opts.pid,
          writerThreads: opts.writerThreads,
          onApplied: release,
          growing,
          onProgress: (n) => progress?.update({ id, action: 'unpack', current: n, total: layer.size, label }),
        });
        progress?.done({ id, action: 'unpack', current: layer.size, total: layer.size, label: result.reused ? `${label} (reused)` : label });
        return result;
      });
      job.catch(() => undefined);
      track(job);
      jobs.set(key, job);
      // A failed unpack may be retried by a later record.
      job.catch(() => jobs.delete(key));
    }
    return job.then((result) => {
      budget.settle(layer.chainID, { bytes: countOf(result.meta.unpackedBytes), entries: countOf(result.meta.entries) });
      return result;
    });
  };

  const flatten = async (image: ImageRecord, store: Store, dir: string): Promise<FlattenResult> => {
    const sources: LayerSource[] = image.layers.map((l) => ({
      path: store.blobPath(l.digest),
      compression: layerCompression(l.mediaType),
      diffID: l.diffID,
      label: l.digest,
    }));
    const { flattenLayers } = await import('./flatten.js');
    return flattenLayers(sources, dir, {
      ...flattenOptions(opts),
      onLayer: (i, phase) => {
        const l = image.layers[i];
        const event = { id: l.digest, action: 'unpack', current: phase === 'done' ? l.size : 0, total: l.size, label: l.digest.slice(7, 19) };
        if (phase === 'start') progress?.start(event);
        else progress?.done(event);
      },
    });
  };

  const handleImage = async (image: ImageRecord, where: string): Promise<RootfsRecord | undefined> => {
    const store = await storeFor(image.store, where);
    try {
      if (opts.flatten !== undefined) {
        if (flattened) throw badRecord(where, '--flatten takes one image; this is a second one');
        flattened = true;
        const result = await flatten(image, store, opts.flatten);
        if (opts.rootless && Object.keys(result.owners).length > 0) {
          opts.log.warn(`rootless: ${Object.keys(result.owners).length} entries keep our own uid/gid instead of the owners the image asks for`);
        }
        await warnIfExposed(result.dir, opts);
        await registerFlattenedDir(store, result.dir);
        return { ...image, type: 'rootfs', v: RECORD_VERSION, dir: result.dir };
      }
      const key = budgetKey(store, image.ref, where);
      const budget = budgetFor(key);
      try {
        const layers = await Promise.all(chained(image).map((l) => startLayer(store, l, budget)));
        budget.check(image.ref ?? where);
        return { ...image, type: 'rootfs', v: RECORD_VERSION, layerDirs: layers.map((l) => l.diffDir) };
      } finally {
        budgets.delete(key);
      }
    } catch (error) {
      const err = toConveyorError(error);
      if (!opts.keepGoing || err.code === 'ERR_INPUT_RECORD') throw err;
      const named = new ConveyorError(err.code, `${image.ref ?? where}: ${err.message}`, { hint: err.hint });
      opts.log.error(named);
      // An `error` record downstream too: the tools after us end with its exit code.
      await pipeline.reportOwn(named);
      exitCode = EXIT.FAILED;
      return undefined;
    }
  };

  const enqueue = (produce: Promise<object | undefined>) => {
    produce.catch(() => undefined);
    track(produce);
    output = output.then(async () => {
      const record = await produce;
      if (record) await out.write(record);
    });
    track(output);
    output.catch((error) => {
      fatal ??= toConveyorError(error);
    });
  };

  try {
    // Error records come as records to pass on in their place, behind the images before them.
    for await (const line of input(() => pending.size === 0)) {
      if (fatal) break;
      const record = line.record!;
      const where = `${line.source}:${line.line}`;
      if (record.type === 'layer' || record.type === 'download') {
        const layer = checkLayerRecord(record, where);
        // With --flatten the layers are applied in order when the image record arrives.
        if (opts.flatten === undefined) {
          const store = await storeFor(record.store as string | undefined, where);
          const budget = budgetFor(budgetKey(store, record.ref, where));
          if (record.type === 'download') startLayer(store, layer, budget, blobIn(store, layer.digest)).catch(() => undefined);
          else {
            blobIn(store, layer.digest).resolve();
            startLayer(store, layer, budget).catch(() => undefined);
          }
        }
        continue;
      }
      if (record.type === 'image') {
        const image = checkImage(record, where);
        // img-fetch writes it once every blob is in: so are those of layers started from a download.
        const root = image.store === undefined ? defaultRoot : resolve(image.store);
        for (const l of image.layers) blobsIn.get(blobKey(root, l.digest))?.resolve();
        enqueue(handleImage(image, where));
        continue;
      }
      // img-fetch pulls one reference at a time: its failure is that of the blobs it was downloading.
      if (record.type === 'error') abandonDownloads(`${where}: the producer failed`);
      enqueue(Promise.resolve(record));
    }
  } catch (error) {
    fatal ??= toConveyorError(error);
  }
  abandonDownloads('the input ended');
  try {
    await output;
  } catch (error) {
    fatal ??= toConveyorError(error);
  }
  // Let work that is still running (layer jobs, staging sweeps) finish or clean up before we exit.
  await Promise.allSettled(pending);
  if (fatal) throw fatal;
  return exitCode;
}

/** A count from a meta.json; a missing or malformed one counts as nothing (older metas have both). */
function countOf(value: unknown): number {
  return Number.isSafeInteger(value) && (value as number) > 0 ? (value as number) : 0;
}

/** The flatten options every --flatten run shares: the tool's limits, threads and warnings. */
function flattenOptions(opts: UnpackOptions): FlattenOptions {
  return {
    rootless: opts.rootless,
    maxBytes: opts.maxBytes,
    maxEntries: opts.maxEntries,
    maxImageBytes: opts.maxImageBytes,
    maxImageEntries: opts.maxImageEntries,
    warn: (m) => opts.log.warn(m),
    writerThreads: opts.writerThreads,
  };
}

/**
 * The store's registration of a --flatten tree (overlay/flattened.ts). It and flatten.js (the applier, the
 * tar reader, node:child_process) are loaded only with --flatten: the per-record path into the store reuses
 * present layers without them (issue 17).
 */
async function registerFlattenedDir(store: Store, dir: string): Promise<void> {
  const { registerFlattened } = await import('@conveyor/lib-common/overlay/flattened');
  await registerFlattened(store, dir);
}

/** --flatten DIR stays where the caller put it, but they hear when others could run its setuid files. */
async function warnIfExposed(dir: string, opts: UnpackOptions): Promise<void> {
  const { exposureWarning } = await import('./flatten.js');
  const warning = await exposureWarning(dir, opts.uid).catch(() => undefined);
  if (warning) opts.log.warn(warning);
}

/** `layer-unpack --flatten DIR FILE...`: tarballs applied in order, no store. */
export async function unpackFiles(files: string[], dir: string, opts: UnpackOptions): Promise<RootfsRecord> {
  const { stat } = await import('node:fs/promises');
  const sizes: number[] = [];
  for (const file of files) {
    try {
      const info = await stat(file);
      if (!info.isFile()) throw new ConveyorError('ERR_USAGE', `${file} is not a regular file`);
      sizes.push(info.size);
    } catch (error) {
      if (error instanceof ConveyorError) throw error;
      throw new ConveyorError('ERR_USAGE', `cannot read layer file ${file}: ${(error as Error).message}`);
    }
  }
  const { flattenLayers } = await import('./flatten.js');
  const result = await flattenLayers(
    files.map((f) => ({ path: f, label: f })),
    dir,
    flattenOptions(opts),
  );
  await warnIfExposed(result.dir, opts);
  // ctr-spawn and overlay-mount take a `dir` only when the store registered it (records may be forged).
  await registerFlattenedDir(new Store(resolve(opts.defaultRoot), { warn: (m) => opts.log.warn(m) }), result.dir);
  return {
    type: 'rootfs',
    v: RECORD_VERSION,
    dir: result.dir,
    layers: files.map((f, i) => ({ file: resolve(f), size: sizes[i], diffID: result.layers[i].diffID })),
  } as unknown as RootfsRecord;
}
