/**
 * Reading images out of the store and describing them as `image` records.
 * Manifests and configs come from registries and are hostile input: every
 * field used is type-checked before it is trusted.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { chainIDs, assertDigest } from './digest.js';
import { ConveyorError } from './errors.js';
import { hostPlatform, platformMatches } from './platform.js';
import { isSchema1, MANIFEST_MEDIA_TYPES, MEDIA_TYPES, layerCompression } from './mediatypes.js';
import { RECORD_VERSION, type Descriptor, type ImageRecord, type ImageRuntimeConfig, type LayerInfo, type Platform } from './records.js';
import { IMAGE_NAME_ANNOTATION, indexEntryProblem, REF_NAME_ANNOTATION, type Store } from './store.js';

export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfigBlob {
  architecture?: string;
  os?: string;
  variant?: string;
  created?: string;
  config?: ImageRuntimeConfig;
  rootfs?: { type: string; diff_ids: string[] };
  history?: unknown[];
}

function invalid(what: string, digest?: string): never {
  throw new ConveyorError('ERR_MANIFEST_INVALID', `${what}${digest ? ` (${digest})` : ''}`);
}

export function checkDescriptor(value: unknown, what: string): Descriptor {
  const d = value as Descriptor;
  if (!d || typeof d !== 'object') invalid(`${what}: not a descriptor`);
  if (typeof d.mediaType !== 'string') invalid(`${what}: mediaType missing`);
  assertDigest(d.digest, `${what} digest`);
  if (!Number.isSafeInteger(d.size) || d.size < 0) invalid(`${what}: size is not a non-negative integer`);
  return d;
}

/** Validates a parsed image manifest (OCI or Docker schema2). */
export function checkManifest(value: unknown, digest?: string): ImageManifest {
  const m = value as ImageManifest;
  if (!m || typeof m !== 'object' || m.schemaVersion !== 2) {
    if (isSchema1(undefined, m)) {
      throw new ConveyorError('ERR_MANIFEST_UNSUPPORTED', `schema1 manifests are not supported${digest ? ` (${digest})` : ''}`, {
        hint: 'schema1 is deprecated; push the image again with a current client to get a schema2 or OCI manifest',
      });
    }
    invalid('manifest: schemaVersion is not 2', digest);
  }
  if (m.mediaType !== undefined && !MANIFEST_MEDIA_TYPES.includes(m.mediaType)) invalid(`manifest: unexpected mediaType ${m.mediaType}`, digest);
  checkDescriptor(m.config, 'manifest config');
  if (!Array.isArray(m.layers)) invalid('manifest: layers is not an array', digest);
  m.layers.forEach((layer, i) => {
    checkDescriptor(layer, `layer ${i}`);
    if (layerCompression(layer.mediaType) === undefined) {
      throw new ConveyorError('ERR_MANIFEST_UNSUPPORTED', `layer ${i} has unsupported media type ${layer.mediaType}`);
    }
  });
  return m;
}

export function checkConfig(value: unknown, layerCount: number, digest?: string): ImageConfigBlob {
  const c = value as ImageConfigBlob;
  if (!c || typeof c !== 'object') invalid('image config: not an object', digest);
  if (!c.rootfs || !Array.isArray(c.rootfs.diff_ids)) invalid('image config: rootfs.diff_ids missing', digest);
  if (c.rootfs.diff_ids.length !== layerCount) {
    invalid(`image config lists ${c.rootfs.diff_ids.length} diff IDs for ${layerCount} layers`, digest);
  }
  for (const [i, id] of c.rootfs.diff_ids.entries()) assertDigest(id, `diff ID ${i}`);
  const rc = c.config ?? {};
  for (const key of ['Entrypoint', 'Cmd', 'Env'] as const) {
    const list = rc[key];
    if (list !== undefined && list !== null && (!Array.isArray(list) || list.some((s) => typeof s !== 'string'))) {
      invalid(`image config: ${key} is not a list of strings`, digest);
    }
  }
  for (const key of ['User', 'WorkingDir', 'StopSignal'] as const) {
    if (rc[key] !== undefined && typeof rc[key] !== 'string') invalid(`image config: ${key} is not a string`, digest);
  }
  return c;
}

/** Layer descriptors joined with diff IDs and chain IDs. */
export function layerInfos(manifest: ImageManifest, config: ImageConfigBlob): LayerInfo[] {
  const diffIDs = config.rootfs!.diff_ids;
  const chain = chainIDs(diffIDs);
  return manifest.layers.map((layer, i) => ({
    mediaType: layer.mediaType,
    digest: layer.digest,
    size: layer.size,
    ...(layer.annotations ? { annotations: layer.annotations } : {}),
    diffID: diffIDs[i],
    chainID: chain[i],
  }));
}

/** Only the runtime fields we pass along, with nulls (Docker writes `"Cmd": null`) dropped. */
function runtimeConfig(config: ImageConfigBlob): ImageRuntimeConfig {
  const out: ImageRuntimeConfig = {};
  const rc = config.config ?? {};
  for (const key of ['User', 'ExposedPorts', 'Env', 'Entrypoint', 'Cmd', 'Volumes', 'WorkingDir', 'Labels', 'StopSignal'] as const) {
    const value = rc[key];
    if (value !== undefined && value !== null && value !== '') (out as Record<string, unknown>)[key] = value;
  }
  return out;
}

export interface BuildImageRecordInput {
  ref: string;
  manifestDescriptor: Descriptor;
  manifest: ImageManifest;
  config: ImageConfigBlob;
  store: string;
  indexDigest?: string;
}

export function buildImageRecord(input: BuildImageRecordInput): ImageRecord {
  const { manifest, config } = input;
  const platform: Platform = { os: config.os ?? 'linux', architecture: config.architecture ?? 'unknown' };
  if (config.variant) platform.variant = config.variant;
  const layers = layerInfos(manifest, config);
  const size = input.manifestDescriptor.size + manifest.config.size + layers.reduce((sum, l) => sum + l.size, 0);
  const record: ImageRecord = {
    type: 'image',
    v: RECORD_VERSION,
    ref: input.ref,
    digest: input.manifestDescriptor.digest,
    mediaType: input.manifestDescriptor.mediaType ?? manifest.mediaType ?? MEDIA_TYPES.ociManifest,
    platform,
    configDescriptor: { mediaType: manifest.config.mediaType, digest: manifest.config.digest, size: manifest.config.size },
    config: runtimeConfig(config),
    layers,
    size,
    store: input.store,
  };
  if (input.indexDigest) record.indexDigest = input.indexDigest;
  if (config.created) record.created = config.created;
  return record;
}

/**
 * The host's manifest in an index another tool stored; never an attestation
 * or other `unknown` platform entry when a real one is there.
 */
function pickHostPlatform(manifests: Descriptor[]): Descriptor | undefined {
  const host = hostPlatform();
  const platformOf = (m: Descriptor) => (m as Descriptor & { platform?: Platform }).platform;
  return manifests.find((m) => platformMatches(platformOf(m), host)) ?? manifests.find((m) => platformOf(m)?.architecture !== 'unknown') ?? manifests[0];
}

/**
 * Describes the image a store index entry points at. Index entries that point
 * at an index (an image layout written by another tool) resolve to the host's
 * platform manifest inside it.
 */
export async function imageRecordFromStore(
  store: Store,
  entry: Descriptor,
  pickPlatform?: (manifests: Descriptor[]) => Descriptor | undefined,
): Promise<ImageRecord> {
  return (await readStoredImage(store, entry, pickPlatform)).record;
}

export interface StoredImage {
  record: ImageRecord;
  /** The platform manifest, validated. */
  manifest: ImageManifest;
  /** The whole config blob, validated (fields beyond the runtime ones kept as the image has them). */
  config: ImageConfigBlob;
}

/** imageRecordFromStore's work, keeping the manifest and config it read (img-inspect, img-history). */
export async function readStoredImage(
  store: Store,
  entry: Descriptor,
  pickPlatform?: (manifests: Descriptor[]) => Descriptor | undefined,
): Promise<StoredImage> {
  // containerd names an image with its own annotation only; an unnamed entry goes by its digest.
  const ref = entry.annotations?.[REF_NAME_ANNOTATION] ?? entry.annotations?.[IMAGE_NAME_ANNOTATION] ?? entry.digest;
  let descriptor = entry;
  let indexDigest: string | undefined;
  let parsed = await store.readJsonBlob<Record<string, unknown> | null>(entry.digest);
  if (!parsed || typeof parsed !== 'object') invalid('manifest: not a JSON object', entry.digest);
  if (Array.isArray(parsed.manifests)) {
    indexDigest = entry.digest;
    // An index another tool wrote may hold junk entries beside good ones: skip those with a warning, as index.json's.
    const manifests: Descriptor[] = [];
    (parsed.manifests as unknown[]).forEach((m, i) => {
      const problem = indexEntryProblem(m);
      if (problem) store.warn(`${ref}: index ${entry.digest}: skipping entry ${i}: ${problem}`);
      else manifests.push(m as Descriptor);
    });
    const chosen = (pickPlatform ?? pickHostPlatform)(manifests);
    if (!chosen) throw new ConveyorError('ERR_PLATFORM_NOT_FOUND', `${ref}: no manifest for this platform in index ${entry.digest}`);
    descriptor = chosen;
    parsed = await store.readJsonBlob<Record<string, unknown> | null>(chosen.digest);
  }
  const manifest = checkManifest(parsed, descriptor.digest);
  const config = checkConfig(await store.readJsonBlob(manifest.config.digest), manifest.layers.length, manifest.config.digest);
  const record = buildImageRecord({ ref, manifestDescriptor: descriptor, manifest, config, store: store.root, indexDigest });
  return { record, manifest, config };
}

/**
 * A layer's unpacked (tar) size, as `docker images` SIZE and `docker history`
 * count: an uncompressed layer's blob size, a gzip layer's ISIZE trailer (the
 * last 4 bytes: the size modulo 4 GiB, so a trailer smaller than the blob is
 * taken as wrapped and 4 GiB steps are added back). zstd and missing blobs
 * give undefined (the caller falls back to the compressed size). Never throws.
 */
export async function layerUnpackedSize(store: Store, layer: Descriptor): Promise<number | undefined> {
  const compression = layerCompression(layer.mediaType);
  if (compression === 'none') return layer.size;
  if (compression !== 'gzip' || layer.size < 18) return undefined;
  // Synchronous: 4 bytes from each layer of every image img-ls lists, where the promise API costs a thread-pool
  // round trip per call (open, read, close) and node:fs/promises to load (issue 17).
  let fd: number | undefined;
  try {
    fd = openSync(store.blobPath(layer.digest), 'r');
    const trailer = Buffer.alloc(4);
    const bytesRead = readSync(fd, trailer, 0, 4, layer.size - 4);
    if (bytesRead !== 4) return undefined;
    let size = trailer.readUInt32LE(0);
    // gzip never shrinks a tar below ~its blob size minus headers: a smaller ISIZE has wrapped past 4 GiB.
    while (size < layer.size - 1024) size += 2 ** 32;
    return size;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Sum of the layers' unpacked sizes (compressed size where unknown): Docker's image SIZE. */
export async function imageUnpackedSize(store: Store, layers: Descriptor[]): Promise<number> {
  let total = 0;
  for (const layer of layers) total += (await layerUnpackedSize(store, layer)) ?? layer.size;
  return total;
}
