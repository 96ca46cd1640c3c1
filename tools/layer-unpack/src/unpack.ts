/**
 * The record stream: `layer` records start unpacking at once (so unpacking
 * overlaps img-fetch's download of later layers) and are consumed; `image`
 * records become `rootfs` records once all their layers are unpacked; every
 * other record passes through unchanged. Output keeps input order.
 * Independent layers unpack in parallel, at most `jobs` at a time.
 */
import type { Readable } from 'node:stream';
import { assertDigest, chainIDs } from '@conveyor/lib-common/digest';
import { ConveyorError, EXIT, toConveyorError } from '@conveyor/lib-common/errors';
import { layerCompression } from '@conveyor/lib-common/mediatypes';
import type { Progress } from '@conveyor/lib-common/log';
import { readLines } from '@conveyor/lib-common/ndjson';
import { RECORD_VERSION, type ImageRecord, type LayerInfo, type RootfsRecord } from '@conveyor/lib-common/records';
import { Store } from '@conveyor/lib-common/store';
import { flattenLayers } from './flatten.js';
import type { LayerSource } from './layer.js';
import { cleanStaging, ensureLayer, type EnsuredLayer } from './store-layers.js';

export interface UnpackOptions {
  /** Store root for records that do not name one. */
  defaultRoot: string;
  /** Flat mode: the one image's layers all go into this directory. */
  flatten?: string;
  jobs: number;
  maxBytes: number;
  maxEntries: number;
  rootless: boolean;
  /** Report a failed image and go on with the next one (exit 1 at the end). */
  keepGoing: boolean;
  pid: number;
  /** Threads creating files per layer (default 2); 0 = inline. */
  writerThreads?: number;
  log: { warn(message: string): void; info(message: string): void; error(error: ConveyorError): void };
  progress?: Progress;
}

export interface RecordSink {
  write(record: object): Promise<void>;
}

/** A counting semaphore: at most `limit` tasks run at once. */
export class Limiter {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.queue.push(resolve));
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      this.queue.shift()?.();
    }
  }
}

function badRecord(where: string, message: string): ConveyorError {
  return new ConveyorError('ERR_INPUT_RECORD', `${where}: ${message}`);
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

function checkImage(record: Record<string, unknown>, where: string): ImageRecord {
  const image = record as unknown as ImageRecord;
  if (!Array.isArray(image.layers)) throw badRecord(where, 'image record has no layers list');
  image.layers.forEach((l, i) => checkLayerInfo(l, `${where} layer ${i}`));
  const chain = chainIDs(image.layers.map((l) => l.diffID));
  image.layers.forEach((l, i) => {
    if (l.chainID !== chain[i]) throw badRecord(where, `layer ${i} chainID ${l.chainID} does not follow from the diff IDs (expected ${chain[i]})`);
  });
  if (image.store !== undefined && (typeof image.store !== 'string' || !image.store.startsWith('/'))) throw badRecord(where, 'store is not an absolute path');
  return image;
}

export async function unpackRecords(input: Readable, out: RecordSink, opts: UnpackOptions): Promise<number> {
  const limiter = new Limiter(opts.jobs);
  const stores = new Map<string, Store>();
  const jobs = new Map<string, Promise<EnsuredLayer>>();
  const inFlight = new Set<Promise<unknown>>();
  let exitCode: number = EXIT.OK;
  let flattened = false;
  let fatal: ConveyorError | undefined;
  let output: Promise<void> = Promise.resolve();

  const storeFor = (root: string | undefined): Store => {
    const path = root ?? opts.defaultRoot;
    let store = stores.get(path);
    if (!store) {
      store = new Store(path);
      stores.set(path, store);
      // Sweep staging dirs left by dead processes; harmless to race.
      void cleanStaging(store).catch(() => undefined);
    }
    return store;
  };

  const progress = opts.progress;
  const startLayer = (store: Store, layer: LayerInfo): Promise<EnsuredLayer> => {
    const key = `${store.root}\0${layer.chainID}`;
    let job = jobs.get(key);
    if (!job) {
      job = limiter.run(async () => {
        const id = layer.digest;
        const label = layer.digest.slice(7, 19);
        progress?.start({ id, action: 'unpack', current: 0, total: layer.size, label });
        const result = await ensureLayer(store, layer, {
          rootless: opts.rootless,
          maxBytes: opts.maxBytes,
          maxEntries: opts.maxEntries,
          warn: (m) => opts.log.warn(`layer ${label}: ${m}`),
          pid: opts.pid,
          writerThreads: opts.writerThreads,
          onProgress: (n) => progress?.update({ id, action: 'unpack', current: n, total: layer.size, label }),
        });
        progress?.done({ id, action: 'unpack', current: layer.size, total: layer.size, label: result.reused ? `${label} (reused)` : label });
        return result;
      });
      job.catch(() => undefined);
      jobs.set(key, job);
      // A failed unpack may be retried by a later record.
      job.catch(() => jobs.delete(key));
    }
    return job;
  };

  const handleImage = async (image: ImageRecord, where: string): Promise<RootfsRecord | undefined> => {
    const store = storeFor(image.store);
    try {
      if (opts.flatten !== undefined) {
        if (flattened) throw badRecord(where, '--flatten takes one image; this is a second one');
        flattened = true;
        const sources: LayerSource[] = image.layers.map((l) => ({
          path: store.blobPath(l.digest),
          compression: layerCompression(l.mediaType),
          diffID: l.diffID,
          label: l.digest,
        }));
        const result = await flattenLayers(sources, opts.flatten, {
          rootless: opts.rootless,
          maxBytes: opts.maxBytes,
          maxEntries: opts.maxEntries,
          warn: (m) => opts.log.warn(m),
          writerThreads: opts.writerThreads,
          onLayer: (i, phase) => {
            const l = image.layers[i];
            const event = { id: l.digest, action: 'unpack', current: phase === 'done' ? l.size : 0, total: l.size, label: l.digest.slice(7, 19) };
            if (phase === 'start') progress?.start(event);
            else progress?.done(event);
          },
        });
        if (opts.rootless && Object.keys(result.owners).length > 0) {
          opts.log.warn(`rootless: ${Object.keys(result.owners).length} entries keep our own uid/gid instead of the owners the image asks for`);
        }
        return { ...image, type: 'rootfs', v: RECORD_VERSION, dir: result.dir };
      }
      const layers = await Promise.all(image.layers.map((l) => startLayer(store, l)));
      return { ...image, type: 'rootfs', v: RECORD_VERSION, layerDirs: layers.map((l) => l.diffDir) };
    } catch (error) {
      const err = toConveyorError(error);
      if (!opts.keepGoing || err.code === 'ERR_INPUT_RECORD') throw err;
      opts.log.error(new ConveyorError(err.code, `${image.ref ?? where}: ${err.message}`, { hint: err.hint }));
      exitCode = EXIT.FAILED;
      return undefined;
    }
  };

  const enqueue = (produce: Promise<object | undefined>) => {
    produce.catch(() => undefined);
    inFlight.add(produce);
    produce.finally(() => inFlight.delete(produce)).catch(() => undefined);
    output = output.then(async () => {
      const record = await produce;
      if (record) await out.write(record);
    });
    output.catch((error) => {
      fatal ??= toConveyorError(error);
    });
  };

  try {
    for await (const line of readLines(input)) {
      if (fatal) break;
      const record = line.record!;
      const where = `${line.source}:${line.line}`;
      if (record.type === 'layer') {
        const layer = checkLayerInfo(record, where);
        if (typeof record.store === 'string' && !record.store.startsWith('/')) throw badRecord(where, 'store is not an absolute path');
        if (opts.flatten === undefined) startLayer(storeFor(record.store as string | undefined), layer);
        continue;
      }
      if (record.type === 'image') {
        const image = checkImage(record, where);
        enqueue(handleImage(image, where));
        continue;
      }
      enqueue(Promise.resolve(record));
    }
  } catch (error) {
    fatal ??= toConveyorError(error);
  }
  try {
    await output;
  } catch (error) {
    fatal ??= toConveyorError(error);
  }
  // Let layer jobs that are still running finish (or clean up) before we exit.
  await Promise.allSettled([...jobs.values(), ...inFlight]);
  if (fatal) throw fatal;
  return exitCode;
}

/** `layer-unpack --flatten DIR FILE...`: tarballs applied in order, no store. */
export async function unpackFiles(files: string[], dir: string, opts: UnpackOptions): Promise<RootfsRecord> {
  const { resolve } = await import('node:path');
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
  const result = await flattenLayers(
    files.map((f) => ({ path: f, label: f })),
    dir,
    { rootless: opts.rootless, maxBytes: opts.maxBytes, maxEntries: opts.maxEntries, warn: (m) => opts.log.warn(m), writerThreads: opts.writerThreads },
  );
  return {
    type: 'rootfs',
    v: RECORD_VERSION,
    dir: result.dir,
    layers: files.map((f, i) => ({ file: resolve(f), size: sizes[i], diffID: result.layers[i].diffID })),
  } as unknown as RootfsRecord;
}
