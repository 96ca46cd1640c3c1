/**
 * What pushing one stored image sends, read from the store before a byte
 * goes out: the manifest (or index) exactly as stored, so its digest is the
 * one the registry will report; for an index, every platform manifest it
 * lists (pushed by digest first, as the registry requires them before the
 * index); and every blob those manifests name (configs and layers, each once).
 *
 * Everything is checked here, so a push never starts that cannot finish:
 * manifests verified against their digests (the store's readBlob) and
 * validated as hostile input (image.ts's checkManifest), every blob present
 * with its declared size. On failure: ERR_IMAGE_NOT_FOUND for a manifest or
 * blob the store lacks (an index whose other platforms were never pulled),
 * ERR_MANIFEST_INVALID / ERR_MANIFEST_UNSUPPORTED for what cannot be pushed,
 * ERR_STORE_CORRUPT for a blob that does not hold its digest.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { checkManifest } from '@conveyor/lib-common/image';
import { INDEX_MEDIA_TYPES, MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import type { Descriptor } from '@conveyor/lib-common/records';
import { indexEntryProblem, type Store } from '@conveyor/lib-common/store';

export interface StoredManifest {
  mediaType: string;
  digest: string;
  body: Buffer;
}

export interface PushPlan {
  /** Pushed last, under the target's tag (or digest). */
  top: StoredManifest;
  /** For an index: its platform manifests, pushed by digest before it. Empty for a single manifest. */
  children: StoredManifest[];
  /** Every config and layer blob, once each, in push order. */
  blobs: Descriptor[];
}

/** The manifest media type to PUT with: the one the manifest declares, else the store entry's, else by shape. */
export function manifestMediaType(parsed: Record<string, unknown>, declared: string | undefined): string {
  if (typeof parsed.mediaType === 'string' && parsed.mediaType !== '') return parsed.mediaType;
  if (declared) return declared;
  return Array.isArray(parsed.manifests) ? MEDIA_TYPES.ociIndex : MEDIA_TYPES.ociManifest;
}

export async function planPush(store: Store, entry: Descriptor, name: string): Promise<PushPlan> {
  const top = await readManifest(store, entry.digest, entry.mediaType, name);
  const blobs = new Map<string, Descriptor>();
  const children: StoredManifest[] = [];
  if (INDEX_MEDIA_TYPES.includes(top.mediaType) || Array.isArray(top.parsed.manifests)) {
    const listed = top.parsed.manifests as unknown[];
    if (!Array.isArray(listed)) throw new ConveyorError('ERR_MANIFEST_INVALID', `${name}: index ${entry.digest} has no manifests array`);
    for (const [i, child] of listed.entries()) {
      const problem = indexEntryProblem(child);
      if (problem) throw new ConveyorError('ERR_MANIFEST_INVALID', `${name}: index ${entry.digest} entry ${i}: ${problem}`);
      const descriptor = child as Descriptor;
      if (!(await store.hasBlob(descriptor.digest, descriptor.size))) {
        throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${name}: index ${entry.digest} lists manifest ${descriptor.digest}, which is not in the store`, {
          hint: 'img-fetch keeps one platform of an index: push that platform by its own reference, or import the whole index (skopeo copy --all)',
        });
      }
      const manifest = await readManifest(store, descriptor.digest, descriptor.mediaType, name);
      if (INDEX_MEDIA_TYPES.includes(manifest.mediaType) || Array.isArray(manifest.parsed.manifests)) {
        throw new ConveyorError('ERR_MANIFEST_UNSUPPORTED', `${name}: index ${entry.digest} nests another index (${descriptor.digest})`);
      }
      addBlobs(blobs, checkManifest(manifest.parsed, descriptor.digest));
      children.push(strip(manifest));
    }
  } else {
    addBlobs(blobs, checkManifest(top.parsed, entry.digest));
  }
  for (const blob of blobs.values()) {
    if (!(await store.hasBlob(blob.digest, blob.size))) {
      throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${name}: blob ${blob.digest} (${blob.size} bytes) is not in the store`, {
        hint: 'pull the image again with img-fetch, which completes it',
      });
    }
  }
  return { top: strip(top), children, blobs: [...blobs.values()] };
}

/** Config first, then layers bottom up; a layer that lives elsewhere (foreign, with URLs) is not pushed, as Docker does. */
function addBlobs(blobs: Map<string, Descriptor>, manifest: ReturnType<typeof checkManifest>): void {
  for (const blob of [manifest.config, ...manifest.layers]) {
    if (Array.isArray((blob as { urls?: unknown }).urls) && /foreign|nondistributable/.test(blob.mediaType)) continue;
    if (!blobs.has(blob.digest)) blobs.set(blob.digest, { mediaType: blob.mediaType, digest: blob.digest, size: blob.size });
  }
}

async function readManifest(
  store: Store,
  digest: string,
  declared: string | undefined,
  name: string,
): Promise<StoredManifest & { parsed: Record<string, unknown> }> {
  const body = await store.readBlob(digest);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${name}: manifest ${digest} is not valid JSON: ${(error as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${name}: manifest ${digest} is not a JSON object`);
  const record = parsed as Record<string, unknown>;
  return { mediaType: manifestMediaType(record, declared), digest, body, parsed: record };
}

function strip(manifest: StoredManifest): StoredManifest {
  return { mediaType: manifest.mediaType, digest: manifest.digest, body: manifest.body };
}
