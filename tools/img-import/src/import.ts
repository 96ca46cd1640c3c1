/**
 * Turns a staged archive (stage.ts) into store images: a docker save archive
 * (manifest.json, legacy `<id>/layer.tar` or Docker 25+ `blobs/sha256/`), or an
 * OCI layout (index.json + blobs/sha256). Library code: never touches `process`.
 *
 * Everything is checked before anything is committed: config digests against
 * their names, layer diff IDs against the config's rootfs.diff_ids, OCI blobs
 * against their digests and sizes. Only then are blobs renamed from ingest/
 * into blobs/, manifests written and references tagged, under a store lease so
 * img-prune cannot remove them in between. Any failure throws before the first
 * commit; the caller discards the staging area, so nothing is stored.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { createGunzip } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { buildImageRecord, checkConfig, checkManifest, layerInfos, type ImageConfigBlob, type ImageManifest } from '@conveyor/lib-common/image';
import { INDEX_MEDIA_TYPES, MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import { formatPlatform, platformMatches } from '@conveyor/lib-common/platform';
import { RECORD_VERSION, type Descriptor, type ImageRecord, type LayerRecord, type Platform } from '@conveyor/lib-common/records';
import { normalizeReference } from '@conveyor/lib-common/reference';
import { IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';
import { MAX_METADATA_BYTES, type StagedMember, type Staging } from './stage.js';

const LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';

/** One image ready to commit: every blob it needs, staged and verified. */
export interface PlannedImage {
  refs: string[];
  manifest: ImageManifest;
  manifestBytes: Buffer;
  config: ImageConfigBlob;
  /** digest → staged member, for config and layers. */
  blobs: Map<string, StagedMember>;
}

export interface ImportOptions {
  store: Store;
  /** --ref: names the image (the only one, or each unnamed one when there are several). */
  ref?: string;
  platform: Platform;
  /** --platform was given: an image of another platform is refused (otherwise imported as it is). */
  platformExplicit?: boolean;
  write: (record: object) => Promise<void>;
  emitLayers?: boolean;
  warn?: (message: string) => void;
}

/** Plans, commits and announces every image of a staged archive. */
export async function importStaged(staging: Staging, options: ImportOptions): Promise<ImageRecord[]> {
  const planned = staging.metadata.has('manifest.json') ? await planDockerSave(staging) : await planOciLayout(staging, options.platform);
  if (planned.length === 0) throw new ConveyorError('ERR_MANIFEST_INVALID', 'the archive holds no image');
  if (options.ref) {
    const ref = normalizeReference(options.ref);
    if (planned.length === 1) planned[0].refs = [ref];
    else for (const image of planned) if (image.refs.length === 0) image.refs = [ref];
  }
  for (const image of planned) {
    const { os = 'linux', architecture = 'unknown', variant } = image.config;
    const actual: Platform = { os, architecture, ...(variant ? { variant } : {}) };
    if (options.platformExplicit && !platformMatches(actual, options.platform)) {
      throw new ConveyorError('ERR_PLATFORM_NOT_FOUND', `the archive's image is for ${formatPlatform(actual)}, not ${formatPlatform(options.platform)}`);
    }
    if (image.refs.length === 0) {
      throw new ConveyorError('ERR_REF_INVALID', `the archive leaves image ${image.manifest.config.digest.slice(7, 19)} unnamed`, {
        hint: 'name it with --ref NAME:TAG',
      });
    }
  }
  const { withLease } = await import('@conveyor/lib-common/lease');
  const { store } = options;
  await store.init();
  const records: ImageRecord[] = [];
  await withLease(store, async () => {
    for (const image of planned) records.push(...(await commit(store, image)));
  });
  for (const record of records) {
    if (options.emitLayers !== false) {
      for (let i = 0; i < record.layers.length; i++) await options.write(layerRecord(record, i));
    }
    await options.write(record);
  }
  return records;
}

async function commit(store: Store, image: PlannedImage): Promise<ImageRecord[]> {
  for (const [digest, member] of image.blobs) {
    if (await store.hasBlob(digest, member.size)) continue;
    await store.commitIngest(digest, member.file);
  }
  const { sha256 } = await import('@conveyor/lib-common/digest');
  const descriptor: Descriptor = { mediaType: MEDIA_TYPES.ociManifest, digest: sha256(image.manifestBytes), size: image.manifestBytes.length };
  await store.writeBlob(descriptor.digest, image.manifestBytes);
  const records: ImageRecord[] = [];
  for (const ref of image.refs) {
    await store.tagManifest(ref, descriptor);
    records.push(buildImageRecord({ ref, manifestDescriptor: descriptor, manifest: image.manifest, config: image.config, store: store.root }));
  }
  return records;
}

function layerRecord(image: ImageRecord, index: number): LayerRecord {
  return {
    type: 'layer',
    v: RECORD_VERSION,
    ...image.layers[index],
    ref: image.ref,
    index,
    count: image.layers.length,
    ...(index > 0 ? { parentChainID: image.layers[index - 1].chainID } : {}),
    store: image.store,
  };
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (error) {
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} is not valid JSON: ${(error as Error).message}`);
  }
}

async function readMember(member: StagedMember, what: string): Promise<Buffer> {
  if (member.size > MAX_METADATA_BYTES) throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} is ${member.size} bytes, too large for JSON metadata`);
  return readFile(member.file);
}

function required(staging: Staging, name: unknown, what: string): StagedMember {
  if (typeof name !== 'string' || name === '') throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} is not named`);
  const member = staging.get(name);
  if (!member)
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} ${JSON.stringify(name)} is not in the archive`, {
      hint: 'the archive is incomplete or truncated',
    });
  return member;
}

/** The sha256 of the uncompressed bytes: the diff ID. Gzip is undone here; zstd is refused (Node 20 has no zstd). */
async function diffIdOf(member: StagedMember, name: string): Promise<{ diffID: string; mediaType: string }> {
  if (member.head[0] === 0x1f && member.head[1] === 0x8b) {
    const hash = createHash('sha256');
    try {
      await pipeline(createReadStream(member.file), createGunzip(), async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) hash.update(chunk);
      });
    } catch (error) {
      throw new ConveyorError('ERR_LAYER_INVALID', `layer ${name} is not valid gzip: ${(error as Error).message}`);
    }
    return { diffID: `sha256:${hash.digest('hex')}`, mediaType: `${LAYER_TAR}+gzip` };
  }
  if (member.head.length >= 4 && member.head.readUInt32LE(0) === 0xfd2fb528) {
    throw new ConveyorError('ERR_LAYER_COMPRESSION', `layer ${name} is zstd-compressed, which this import cannot verify yet`);
  }
  return { diffID: member.digest, mediaType: LAYER_TAR };
}

interface DockerSaveEntry {
  Config?: unknown;
  RepoTags?: unknown;
  Layers?: unknown;
}

/** docker save: manifest.json lists config and layer members; an OCI manifest is built for each image. */
async function planDockerSave(staging: Staging): Promise<PlannedImage[]> {
  const entries = parseJson(staging.metadata.get('manifest.json')!, 'manifest.json');
  if (!Array.isArray(entries)) throw new ConveyorError('ERR_MANIFEST_INVALID', 'manifest.json is not a list of images');
  const planned: PlannedImage[] = [];
  for (const [n, raw] of (entries as DockerSaveEntry[]).entries()) {
    const configMember = required(staging, raw?.Config, `manifest.json image ${n}: config`);
    const configName = String(raw.Config);
    const hex = /(?:^|\/)([a-f0-9]{64})(?:\.json)?$/.exec(configName)?.[1];
    if (hex && `sha256:${hex}` !== configMember.digest) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `config ${configName} holds ${configMember.digest}, not the digest its name promises`);
    }
    if (!Array.isArray(raw.Layers)) throw new ConveyorError('ERR_MANIFEST_INVALID', `manifest.json image ${n}: Layers is not a list`);
    const config = checkConfig(parseJson(await readMember(configMember, configName), `config ${configName}`), raw.Layers.length, configMember.digest);
    const blobs = new Map<string, StagedMember>([[configMember.digest, configMember]]);
    const layers: Descriptor[] = [];
    for (const [i, name] of (raw.Layers as unknown[]).entries()) {
      const member = required(staging, name, `manifest.json image ${n}: layer ${i}`);
      const { diffID, mediaType } = await diffIdOf(member, String(name));
      const expected = config.rootfs!.diff_ids[i];
      if (diffID !== expected) {
        throw new ConveyorError('ERR_DIGEST_MISMATCH', `layer ${i} (${String(name)}) has diff ID ${diffID}; the config says ${expected}`);
      }
      blobs.set(member.digest, member);
      layers.push({ mediaType, digest: member.digest, size: member.size });
    }
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configMember.digest, size: configMember.size },
      layers,
    };
    const tags = Array.isArray(raw.RepoTags) ? raw.RepoTags.filter((t): t is string => typeof t === 'string') : [];
    planned.push({ refs: tags.map((t) => normalizeReference(t)), manifest, manifestBytes: Buffer.from(JSON.stringify(manifest)), config, blobs });
  }
  return planned;
}

/** OCI layout: index.json's manifests (an index among them is resolved to the wanted platform). */
async function planOciLayout(staging: Staging, platform: Platform): Promise<PlannedImage[]> {
  const indexBytes = staging.metadata.get('index.json');
  if (!indexBytes) {
    throw new ConveyorError('ERR_MANIFEST_INVALID', 'not an image archive: no manifest.json (docker save) nor index.json (OCI layout)', {
      hint: 'give a docker save archive, an OCI archive or an OCI layout directory',
    });
  }
  const index = parseJson(indexBytes, 'index.json') as { manifests?: unknown };
  if (!index || !Array.isArray(index.manifests)) throw new ConveyorError('ERR_MANIFEST_INVALID', 'index.json has no manifests list');
  const planned: PlannedImage[] = [];
  for (const raw of index.manifests as Descriptor[]) {
    let descriptor = raw;
    const annotations = raw?.annotations ?? {};
    const name = annotations[IMAGE_NAME_ANNOTATION] ?? annotations[REF_NAME_ANNOTATION];
    let bytes = await blob(staging, descriptor, 'manifest');
    if (INDEX_MEDIA_TYPES.includes(descriptor.mediaType)) {
      const nested = parseJson(bytes, `index ${descriptor.digest}`) as { manifests?: (Descriptor & { platform?: Platform })[] };
      const choice = (nested.manifests ?? []).find((m) => m?.platform && platformMatches(m.platform, platform));
      if (!choice) throw new ConveyorError('ERR_PLATFORM_NOT_FOUND', `index ${descriptor.digest} has no manifest for ${formatPlatform(platform)}`);
      descriptor = choice;
      bytes = await blob(staging, descriptor, 'manifest');
    }
    const manifest = checkManifest(parseJson(bytes, `manifest ${descriptor.digest}`), descriptor.digest);
    const configMember = await member(staging, manifest.config, 'config');
    const config = checkConfig(parseJson(await readMember(configMember, manifest.config.digest), `config ${manifest.config.digest}`), manifest.layers.length);
    const blobs = new Map<string, StagedMember>([[manifest.config.digest, configMember]]);
    for (const layer of manifest.layers) blobs.set(layer.digest, await member(staging, layer, 'layer'));
    layerInfos(manifest, config);
    planned.push({ refs: name ? [refFromAnnotation(name)].filter((r): r is string => r !== undefined) : [], manifest, manifestBytes: bytes, config, blobs });
  }
  return planned;
}

/** A bare tag (skopeo's oci-archive: writes `latest`) names nothing by itself: --ref must. */
function refFromAnnotation(name: string): string | undefined {
  if (!name.includes('/') && !name.includes(':') && !name.includes('@')) return undefined;
  try {
    return normalizeReference(name);
  } catch {
    return undefined;
  }
}

async function member(staging: Staging, descriptor: Descriptor, what: string): Promise<StagedMember> {
  if (!descriptor || typeof descriptor.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(descriptor.digest)) {
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} descriptor has no sha256 digest`);
  }
  const found = staging.get(`blobs/sha256/${descriptor.digest.slice(7)}`);
  if (!found)
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} ${descriptor.digest} is not in the archive`, { hint: 'the archive is incomplete or truncated' });
  if (found.size !== descriptor.size)
    throw new ConveyorError('ERR_SIZE_MISMATCH', `${what} ${descriptor.digest} is ${found.size} bytes, not ${descriptor.size}`);
  return found;
}

async function blob(staging: Staging, descriptor: Descriptor, what: string): Promise<Buffer> {
  return readMember(await member(staging, descriptor, what), descriptor.digest);
}
