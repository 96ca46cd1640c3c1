/**
 * The image half of the check: index.json, every entry's manifest (and the
 * child manifests of an index that are present: a pull keeps only the host's
 * platform), each manifest's config (parsed, as many diff IDs as layers) and
 * the list of blobs each entry needs, with the sizes its descriptors give.
 *
 * Manifests and configs are read whole (under a cap) and their digest checked
 * as they are read; the blobs they name are only listed here: blobs.ts hashes
 * them. An entry with a problem anywhere in its tree is marked to be dropped
 * from index.json by --repair (its name kept in the record, to pull again).
 *
 * Failure: problems are reported, not thrown; I/O errors other than a missing
 * or unreadable blob propagate.
 */
import { lstat } from 'node:fs/promises';
import { checkConfig, checkDescriptor, checkManifest } from '@conveyor/lib-common/image';
import { INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import type { Descriptor } from '@conveyor/lib-common/records';
import { indexEntryProblem, REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';
import { type BlobState, checkBlob } from './blob-read.js';
import type { Report } from './problems.js';

/** A blob the images need: the sizes descriptors give it and the index entries (positions) that need it. */
export interface Need {
  size: number;
  entries: Set<number>;
  /** What it is to them, for messages: `manifest`, `config`, `layer`. */
  role: string;
}

export interface ImageCheck {
  /** Blob hexes needed, by what. */
  needs: Map<string, Need>;
  /** Blobs read whole and verified here (no need to hash them again). */
  verified: Set<string>;
  /** Blobs found damaged while read here: blobs.ts reports them with the blob problems. */
  damaged: Map<string, BlobState>;
  /** Positions of index.json entries --repair drops. */
  drop: Set<number>;
  /** The reference (or digest) of each entry, for messages and records. */
  names: Map<number, string>;
}

/** How deep an index of indexes is followed (gc.ts follows 8 too). */
const MAX_DEPTH = 8;

export function entryName(entry: unknown, position: number): string {
  const d = entry as Descriptor | null;
  const ref = d?.annotations?.[REF_NAME_ANNOTATION];
  if (typeof ref === 'string' && ref !== '') return ref;
  return typeof d?.digest === 'string' ? d.digest : `entry ${position}`;
}

function parseJson(data: Buffer): { value: unknown } | { error: string } {
  try {
    return { value: JSON.parse(data.toString('utf8')) };
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/**
 * Checks every entry of `entries` (index.json's manifests, as read) and what
 * it reaches. Problems go to `report` as they are found.
 */
export async function checkImages(store: Store, entries: unknown[], report: Report): Promise<ImageCheck> {
  const check: ImageCheck = { needs: new Map(), verified: new Set(), damaged: new Map(), drop: new Set(), names: new Map() };
  const need = (digest: string, size: number, position: number, role: string) => {
    const hex = digest.slice(7);
    const known = check.needs.get(hex);
    if (known) known.entries.add(position);
    else check.needs.set(hex, { size, entries: new Set([position]), role });
  };
  /** Reads a manifest or config blob: its data when whole and verified; otherwise records why. */
  const read = async (digest: string, size: number): Promise<Buffer | BlobState> => {
    const hex = digest.slice(7);
    const state = await checkBlob(store.blobPath(digest), digest, { keep: true, expectedSize: size });
    if (state.kind === 'ok' && state.data) {
      check.verified.add(hex);
      return state.data;
    }
    if (state.kind === 'not-file' || state.kind === 'corrupt') check.damaged.set(hex, state);
    return state;
  };

  for (const [position, entry] of entries.entries()) {
    const name = entryName(entry, position);
    check.names.set(position, name);
    report.checked.images++;
    const ref = name;
    const entryProblem = indexEntryProblem(entry);
    const mediaType = (entry as Descriptor | null)?.mediaType;
    if (entryProblem !== undefined || !(MANIFEST_MEDIA_TYPES.includes(mediaType ?? '') || INDEX_MEDIA_TYPES.includes(mediaType ?? ''))) {
      check.drop.add(position);
      await report.problem({
        code: 'FSCK_INDEX_ENTRY_INVALID',
        path: 'index.json',
        ref,
        message: `index.json entry ${position} (${name}): ${entryProblem ?? `media type ${JSON.stringify(mediaType)} is not an image manifest or index`}`,
        repaired: report.repair,
      });
      continue;
    }
    const top = entry as Descriptor;
    const bad = async (
      code: 'FSCK_MANIFEST_MISSING' | 'FSCK_MANIFEST_INVALID' | 'FSCK_CONFIG_INVALID' | 'FSCK_BLOB_MISSING',
      digest: string,
      message: string,
    ) => {
      check.drop.add(position);
      await report.problem({
        code,
        path: `blobs/sha256/${digest.slice(7)}`,
        digest,
        ref,
        message: `${name}: ${message}${report.repair ? ' (removed from index.json: pull it again)' : ''}`,
        repaired: report.repair,
      });
    };

    const visit = async (descriptor: Descriptor, depth: number): Promise<void> => {
      const isTop = depth === 0;
      need(descriptor.digest, descriptor.size, position, isTop ? 'manifest' : 'child manifest');
      const data = await read(descriptor.digest, descriptor.size);
      if (!Buffer.isBuffer(data)) {
        if (data.kind === 'missing') await bad('FSCK_MANIFEST_MISSING', descriptor.digest, `manifest ${descriptor.digest} is missing`);
        if (data.kind === 'too-large')
          await bad('FSCK_MANIFEST_INVALID', descriptor.digest, `manifest ${descriptor.digest} is ${data.size} bytes: no manifest is`);
        // Damaged: blobs.ts reports the blob, and the entry goes with it.
        return;
      }
      const parsed = parseJson(data);
      if ('error' in parsed) return bad('FSCK_MANIFEST_INVALID', descriptor.digest, `manifest ${descriptor.digest} is not JSON: ${parsed.error}`);
      const value = parsed.value as { mediaType?: unknown; manifests?: unknown } | null;
      const declared = value && typeof value === 'object' ? value.mediaType : undefined;
      if (declared !== undefined && declared !== descriptor.mediaType) {
        return bad(
          'FSCK_MANIFEST_INVALID',
          descriptor.digest,
          `manifest ${descriptor.digest} says media type ${JSON.stringify(declared)}, its descriptor ${descriptor.mediaType}`,
        );
      }
      if (INDEX_MEDIA_TYPES.includes(descriptor.mediaType)) {
        if (!Array.isArray(value?.manifests)) return bad('FSCK_MANIFEST_INVALID', descriptor.digest, `index ${descriptor.digest} has no manifests list`);
        if (depth >= MAX_DEPTH) return bad('FSCK_MANIFEST_INVALID', descriptor.digest, `index ${descriptor.digest} nests more than ${MAX_DEPTH} deep`);
        for (const [i, child] of value.manifests.entries()) {
          let childDescriptor: Descriptor;
          try {
            childDescriptor = checkDescriptor(child, `index ${descriptor.digest} manifest ${i}`);
          } catch (error) {
            return bad('FSCK_MANIFEST_INVALID', descriptor.digest, (error as Error).message);
          }
          const childType = childDescriptor.mediaType;
          // Other platforms' manifests are not pulled, and artifacts (attestations) are not ours to check.
          if (!MANIFEST_MEDIA_TYPES.includes(childType) && !INDEX_MEDIA_TYPES.includes(childType)) continue;
          if ((await lstat(store.blobPath(childDescriptor.digest)).catch(() => undefined)) === undefined) continue;
          await visit(childDescriptor, depth + 1);
        }
        return;
      }
      let manifest: ReturnType<typeof checkManifest>;
      try {
        manifest = checkManifest(value, descriptor.digest);
      } catch (error) {
        // Layers of a type we do not unpack (another tool's artifact) are not damage: their descriptors still are checked.
        if (!/^layer \d+ has unsupported media type/.test((error as Error).message))
          return bad('FSCK_MANIFEST_INVALID', descriptor.digest, (error as Error).message);
        manifest = value as ReturnType<typeof checkManifest>;
        try {
          for (const [i, layer] of manifest.layers.entries()) checkDescriptor(layer, `layer ${i}`);
        } catch (invalid) {
          return bad('FSCK_MANIFEST_INVALID', descriptor.digest, (invalid as Error).message);
        }
      }
      need(manifest.config.digest, manifest.config.size, position, 'config');
      for (const layer of manifest.layers) need(layer.digest, layer.size, position, 'layer');
      const configData = await read(manifest.config.digest, manifest.config.size);
      if (!Buffer.isBuffer(configData)) {
        if (configData.kind === 'missing') await bad('FSCK_BLOB_MISSING', manifest.config.digest, `config ${manifest.config.digest} is missing`);
        if (configData.kind === 'too-large')
          await bad('FSCK_CONFIG_INVALID', manifest.config.digest, `config ${manifest.config.digest} is ${configData.size} bytes: no config is`);
        return;
      }
      const config = parseJson(configData);
      if ('error' in config) return bad('FSCK_CONFIG_INVALID', manifest.config.digest, `config ${manifest.config.digest} is not JSON: ${config.error}`);
      try {
        checkConfig(config.value, manifest.layers.length, manifest.config.digest);
      } catch (error) {
        return bad('FSCK_CONFIG_INVALID', manifest.config.digest, (error as Error).message);
      }
    };
    await visit(top, 0);
  }
  return check;
}
