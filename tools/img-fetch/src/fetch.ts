/**
 * Pulling one image into the store. Library code: takes a store, a client
 * factory and callbacks; never touches `process`.
 *
 * Order of work, so a crash at any point leaves a consistent store:
 * config, manifest and layer blobs (in parallel, each verified and committed
 * on its own; a `layer` record goes out as soon as each is in and the config
 * is known; until index.json names the manifest they are orphans a crash
 * leaves to gc) → index.json entry (the platform manifest, annotated with
 * the index digest when it came from one) → the `image` record.
 */
import { lookupLocalImage } from '@conveyor/lib-common/local-image';
import { checkConfig, imageRecordFromStore, layerInfos, buildImageRecord, type ImageConfigBlob } from '@conveyor/lib-common/image';
import { ConveyorError, toConveyorError } from '@conveyor/lib-common/errors';
import { digestHex } from '@conveyor/lib-common/digest';
import { acquireLock } from '@conveyor/lib-common/lock';
import { formatPlatform, platformMatches } from '@conveyor/lib-common/platform';
import {
  RECORD_VERSION,
  type Descriptor,
  type DownloadRecord,
  type ImageRecord,
  type LayerInfo,
  type LayerRecord,
  type Platform,
} from '@conveyor/lib-common/records';
import { DEFAULT_REGISTRY, formatReference, parseReference } from '@conveyor/lib-common/reference';
import type { Store } from '@conveyor/lib-common/store';
import type { RegistryClient, RepositoryRef } from '@conveyor/registry/client';
import type { ResolvedManifest } from '@conveyor/registry/manifest';
import type { FreeSpace } from '@conveyor/registry/blob';

/** Set on a store index entry whose manifest was chosen from an index: the index digest. */
export const INDEX_DIGEST_ANNOTATION = 'io.conveyor.index.digest';
/** Set on a store index entry chosen from an index: the platform it was chosen for (`linux/amd64`). */
export const PLATFORM_ANNOTATION = 'io.conveyor.platform';

/**
 * An image config is read into memory and parsed whole. Real ones are a few
 * KiB (hundreds with long histories); 8 MiB leaves room for those and keeps a
 * hostile one from costing more than a manifest's order of magnitude.
 */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

export type PullPolicy = 'always' | 'missing' | 'never';

export interface ProgressSink {
  start(event: { id: string; action: string; current: number; total?: number; label?: string }): void;
  update(event: { id: string; action: string; current: number; total?: number; label?: string }): void;
  done(event: { id: string; action: string; current: number; total?: number; label?: string }): void;
}

export interface FetchOptions {
  store: Store;
  /** Creates (once) the registry client; not called when the store can answer alone. */
  client: () => Promise<RegistryClient>;
  /** The platform to choose from an index (default: the host's, chosen by the caller). */
  platform: Platform;
  /** True when the user asked for the platform: a single-platform image of another platform is then an error. */
  platformExplicit?: boolean;
  /** always: ask the registry even when the image is present; missing: only when absent; never: store only. */
  pull?: PullPolicy;
  /** Parallel layer downloads. */
  jobs?: number;
  /** Emit a `layer` record per layer before the `image` record, and a `download` record as each missing one starts downloading. */
  emitLayers?: boolean;
  write: (record: object) => Promise<void>;
  progress?: ProgressSink;
  info?: (message: string) => void;
  warn?: (message: string) => void;
  /** Passed to blob downloads: called before each retry. */
  onRetry?: (message: string) => void;
  /**
   * Registry hosts that mirror docker.io (Docker's `registry-mirrors`): tried
   * in order for docker.io references, docker.io itself last.
   */
  mirrors?: string[];
  /** Largest layer blob accepted, by its declared size (default DEFAULT_MAX_BLOB_SIZE). */
  maxBlobSize?: number;
  /** Free-space reading for the store; default statfs (tests inject a small one). */
  freeSpace?: FreeSpace;
}

export interface FetchResult {
  record: ImageRecord;
  /** `store`: answered from the store; `pulled`: manifest fetched from the registry. */
  source: 'store' | 'pulled';
  downloadedLayers: number;
  /** The layer digests this pull downloaded (the others were in the store): the terminal summary's per-layer status. */
  downloadedDigests: string[];
}

/** Pulls one reference and writes its records. */
export async function fetchImage(input: string, options: FetchOptions): Promise<FetchResult> {
  const ref = parseReference(input);
  const name = formatReference(ref);
  const { store } = options;
  const pull = options.pull ?? 'always';
  // Every name the store answers to: ours, and the short names and bare tags skopeo, umoci and containerd write.
  const entry = (await lookupLocalImage(store, input))?.entry;

  if (entry && (ref.digest || pull !== 'always')) {
    const hit = await fromStore(store, entry, options);
    if (hit) return emitFromStore(name, hit, options);
  }
  if (pull === 'never') {
    throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${name} is not in the store ${store.root}`, { hint: 'pull it with --pull=missing or --pull=always' });
  }
  const client = await options.client();
  const reference = ref.digest ?? ref.tag!;
  const mirrors = ref.registry === DEFAULT_REGISTRY ? (options.mirrors ?? []) : [];
  const sources = [...mirrors, ref.registry];
  for (let i = 0; ; i++) {
    const repo: RepositoryRef = { registry: sources[i], repository: ref.repository };
    try {
      return await pullVia(name, repo, reference, entry, client, options);
    } catch (error) {
      if (i === sources.length - 1) throw error;
      // A mirror is a cache: whatever it fails with, the origin may still answer.
      options.info?.(`mirror ${sources[i]} failed for ${name}: ${toConveyorError(error).message}; trying ${sources[i + 1]}`);
    }
  }
}

async function pullVia(
  name: string,
  repo: RepositoryRef,
  reference: string,
  entry: Descriptor | undefined,
  client: RegistryClient,
  options: FetchOptions,
): Promise<FetchResult> {
  if (entry && !parseReference(name).digest) {
    // Present by tag: one HEAD tells whether the tag still points where we have it.
    const head = await client.headManifest(repo, reference);
    if (head && (head.digest === entry.digest || head.digest === entry.annotations?.[INDEX_DIGEST_ANNOTATION])) {
      const hit = await fromStore(options.store, entry, options);
      if (hit) return emitFromStore(name, hit, options);
    }
  }
  return pullFromRegistry(name, repo, reference, client, options);
}

/** The `layer` record announcing layer `index` of an image. */
function layerRecord(ref: string, layers: LayerInfo[], index: number, store: string): LayerRecord {
  return {
    type: 'layer',
    v: RECORD_VERSION,
    ...layers[index],
    ref,
    index,
    count: layers.length,
    ...(index > 0 ? { parentChainID: layers[index - 1].chainID } : {}),
    store,
  };
}

/** Fetches (or reads) the config blob, validates it, checks its platform. */
async function loadConfig(
  name: string,
  repo: RepositoryRef,
  client: RegistryClient,
  resolved: ResolvedManifest,
  options: FetchOptions,
): Promise<{ config: ImageConfigBlob; layers: LayerInfo[] }> {
  const { store } = options;
  const { manifest } = resolved;
  const { digest, size } = manifest.config;
  const present = () => store.hasBlob(digest, size);
  let configBytes: Buffer;
  if (await present()) configBytes = await store.readBlob(digest);
  else {
    // Concurrent pulls of one image download its config once: the layers' per-digest
    // ingest lock, except when a (forged) layer has the config's digest, which this
    // pull downloads under that very lock (taking it here would wait for ourselves).
    const shared = manifest.layers.some((layer) => layer.digest === digest);
    const lock = shared ? undefined : await acquireLock(store.lockPath(`ingest-${digestHex(digest)}`));
    try {
      if (await present()) configBytes = await store.readBlob(digest);
      else {
        configBytes = await client.getSmallBlob(repo, digest, size, MAX_CONFIG_BYTES);
        await store.writeBlob(digest, configBytes);
      }
    } finally {
      await lock?.release();
    }
  }
  let parsedConfig: unknown;
  try {
    parsedConfig = JSON.parse(configBytes.toString('utf8'));
  } catch (error) {
    throw new ConveyorError('ERR_MANIFEST_INVALID', `image config ${manifest.config.digest} is not valid JSON: ${(error as Error).message}`);
  }
  const config: ImageConfigBlob = checkConfig(parsedConfig, manifest.layers.length, manifest.config.digest);
  if (!resolved.indexDigest) {
    const actual: Platform = {
      os: config.os ?? 'linux',
      architecture: config.architecture ?? 'unknown',
      ...(config.variant ? { variant: config.variant } : {}),
    };
    if (!platformMatches(actual, options.platform)) {
      const message = `${name} is a single-platform image for ${formatPlatform(actual)}, not ${formatPlatform(options.platform)}`;
      if (options.platformExplicit)
        throw new ConveyorError('ERR_PLATFORM_NOT_FOUND', message, { hint: `use --platform ${formatPlatform(actual)}, or another tag` });
      options.warn?.(message);
    }
  }
  return { config, layers: layerInfos(manifest, config) };
}

/**
 * A pull writes blobs that nothing references until its index.json entry is
 * written: it holds a store lease throughout, so img-prune waits for it (and
 * it waits for a running prune) rather than deleting them (lib-common/src/lease.ts).
 */
async function pullFromRegistry(name: string, repo: RepositoryRef, reference: string, client: RegistryClient, options: FetchOptions): Promise<FetchResult> {
  const { withLease } = await import('@conveyor/lib-common/lease');
  const { resolveManifest } = await import('@conveyor/registry/manifest');
  // Asked for while the store gets ready (the lease taken): the manifest needs nothing from the store.
  const manifest = resolveManifest(client, repo, reference, options.platform);
  manifest.catch(() => undefined);
  // A new store's layout files are written and fsynced while the blobs download
  // (into ingest/): the first blob committed to blobs/ waits for them (Store.commitIngest
  // and writeBlob: never blobs without index.json), as does the tag. The root is made
  // (or closed) first, once.
  await options.store.tighten();
  const layout = options.store.init();
  layout.catch(() => undefined);
  return withLease(options.store, () => pullLeased(name, repo, manifest, layout, client, options), {
    onWait: () => options.info?.('waiting for img-prune to finish'),
  });
}

async function pullLeased(
  name: string,
  repo: RepositoryRef,
  manifestReady: Promise<ResolvedManifest>,
  layoutReady: Promise<void>,
  client: RegistryClient,
  options: FetchOptions,
): Promise<FetchResult> {
  const { store } = options;
  const { checkBlobSize, DEFAULT_MAX_BLOB_SIZE, ensureFreeSpace, fetchBlobToStore } = await import('@conveyor/registry/blob');
  const maxSize = options.maxBlobSize ?? DEFAULT_MAX_BLOB_SIZE;
  const resolved = await manifestReady;
  const { manifest } = resolved;

  const count = manifest.layers.length;
  // Layers already in the store go out at once; the rest as each one lands.
  const present: number[] = [];
  const missing: number[] = [];
  // One stat per layer, all at once: a many-layer image does not wait for them one by one.
  const have = await Promise.all(manifest.layers.map((layer) => store.hasBlob(layer.digest, layer.size)));
  for (let i = 0; i < count; i++) (have[i] ? present : missing).push(i);
  // Refused before the first byte moves: a layer over the limit, or an image
  // the disk cannot hold (each download checks again for its own blob).
  let needed = 0;
  for (const i of missing) {
    checkBlobSize(manifest.layers[i], maxSize, `${repo.registry}/${repo.repository}`);
    needed += manifest.layers[i].size;
  }
  await ensureFreeSpace(
    store.root,
    needed,
    `${missing.length === 1 ? 'the missing layer' : `the ${missing.length} missing layers`} of ${name}`,
    options.freeSpace,
  );

  // The config is fetched while the layers already download: the layer
  // records need its diff IDs, the downloads do not.
  const abort = new AbortController();
  let firstError: unknown;
  const fail = (error: unknown) => {
    if (firstError === undefined) firstError = error;
    abort.abort(error);
  };
  const configReady = loadConfig(name, repo, client, resolved, options).catch((error) => {
    fail(error);
    throw error;
  });
  configReady.catch(() => undefined);
  // Off the critical path: written while the layers download.
  const manifestStored = store.writeBlob(resolved.descriptor.digest, resolved.body).catch((error) => {
    fail(error);
    throw error;
  });
  manifestStored.catch(() => undefined);
  // A `download` record is said as the blob starts into ingest/, so that layer-unpack reads it as it grows
  // (protocol.md `download`); the `layer` record once it is in.
  const emitLayer = async (index: number, type: 'layer' | 'download' = 'layer') => {
    const { layers } = await configReady;
    if (options.emitLayers === false) return;
    const record: LayerRecord | DownloadRecord = { ...layerRecord(name, layers, index, store.root), type };
    await options.write(record);
  };

  const announcePresent = (async () => {
    for (const i of present) await emitLayer(i);
  })().catch(fail);
  let downloaded = 0;
  const downloadedDigests: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < missing.length && !abort.signal.aborted) {
      const i = missing[next++];
      const layer = manifest.layers[i];
      const label = `${layer.digest.slice(7, 19)}`;
      const event = { id: layer.digest, action: 'download', current: 0, total: layer.size, label };
      let announced: Promise<void> | undefined;
      try {
        options.progress?.start(event);
        const result = await fetchBlobToStore(client, store, repo, layer, {
          signal: abort.signal,
          onProgress: (current) => options.progress?.update({ ...event, current }),
          onWait: () => options.info?.(`waiting for another process downloading ${layer.digest}`),
          onReceiving: () => {
            if (announced) return;
            announced = emitLayer(i, 'download');
            announced.catch(() => undefined);
          },
          onRetry: options.onRetry,
          maxSize,
          freeSpace: options.freeSpace,
        });
        if (result.status === 'downloaded') {
          downloaded++;
          downloadedDigests.push(layer.digest);
        }
        options.progress?.done({ ...event, current: layer.size });
        // Its `download` record first, if it has one.
        await announced;
        await emitLayer(i);
      } catch (error) {
        fail(error);
        return;
      }
    }
  };
  const jobs = Math.max(1, Math.min(options.jobs ?? 3, missing.length || 1));
  await Promise.all([announcePresent, ...Array.from({ length: jobs }, worker)]);
  if (firstError !== undefined) throw toConveyorError(firstError);
  const { config } = await configReady;

  await manifestStored;
  await layoutReady;
  const annotations: Record<string, string> = {};
  if (resolved.indexDigest) {
    annotations[INDEX_DIGEST_ANNOTATION] = resolved.indexDigest;
    if (resolved.platform) annotations[PLATFORM_ANNOTATION] = formatPlatform(resolved.platform);
  }
  await store.tagManifest(name, { ...resolved.descriptor, ...(resolved.indexDigest ? { annotations } : {}) });
  const record = buildImageRecord({
    ref: name,
    manifestDescriptor: resolved.descriptor,
    manifest,
    config,
    store: store.root,
    indexDigest: resolved.indexDigest,
  });
  await options.write(record);
  return { record, source: 'pulled', downloadedLayers: downloaded, downloadedDigests };
}

/**
 * The image as the store has it, when it is complete (every blob present) and
 * of the wanted platform; undefined means: ask the registry.
 */
async function fromStore(store: Store, entry: Descriptor, options: FetchOptions): Promise<ImageRecord | undefined> {
  let record: ImageRecord;
  try {
    record = await imageRecordFromStore(store, entry);
  } catch {
    return undefined;
  }
  for (const layer of record.layers) {
    if (!(await store.hasBlob(layer.digest, layer.size))) return undefined;
  }
  const indexDigest = entry.annotations?.[INDEX_DIGEST_ANNOTATION];
  if (indexDigest) {
    record.indexDigest = indexDigest;
    const chosenFor = entry.annotations?.[PLATFORM_ANNOTATION];
    const platform = chosenFor ? parsePlatformLoose(chosenFor) : record.platform;
    if (!platformMatches(platform, options.platform)) return undefined;
  } else if (options.platformExplicit && !platformMatches(record.platform, options.platform)) {
    return undefined;
  }
  return record;
}

function parsePlatformLoose(text: string): Platform {
  const [os, architecture, variant] = text.split('/');
  return { os, architecture, ...(variant ? { variant } : {}) };
}

async function emitFromStore(name: string, record: ImageRecord, options: FetchOptions): Promise<FetchResult> {
  record.ref = name;
  if (options.emitLayers !== false) {
    for (let i = 0; i < record.layers.length; i++) await options.write(layerRecord(name, record.layers, i, record.store));
  }
  await options.write(record);
  return { record, source: 'store', downloadedLayers: 0, downloadedDigests: [] };
}
