/**
 * Naming an image the store holds with more references, as `docker tag`
 * does: each new reference becomes an index.json entry pointing at the same
 * manifest (or index) as the source, written under the store's index lock
 * (Store.tagManifest, the function img-fetch records its pulls with). A name
 * that pointed elsewhere is moved. Nothing is copied: blobs are shared.
 *
 * The source must be complete enough to describe (its manifest and config
 * read and validated) before anything is written. On failure: ERR_REF_INVALID
 * for a malformed reference or a new one pinned by digest (a digest names
 * content, it cannot be given), ERR_IMAGE_NOT_FOUND when the source is not in
 * the store, the store's own errors otherwise; a failure at the Nth new name
 * leaves the earlier ones written.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { imageRecordFromStore } from '@conveyor/lib-common/image';
import { findLocalImage } from '@conveyor/lib-common/local-image';
import type { ImageRecord } from '@conveyor/lib-common/records';
import { formatReference, parseReference } from '@conveyor/lib-common/reference';
import { REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';

/** Names the store's own tagManifest sets; everything else on the entry (index digest, platform) is kept. */
const NAME_ANNOTATIONS = new Set([REF_NAME_ANNOTATION, 'io.containerd.image.name']);

/** The normalised new references, refused before anything is written when one is pinned by digest. */
export function targetNames(inputs: string[]): string[] {
  return inputs.map((input) => {
    const ref = parseReference(input);
    if (ref.digest) {
      throw new ConveyorError('ERR_REF_INVALID', `cannot tag with a digest: ${input}`, {
        hint: 'a digest names content and cannot be given to an image; use NAME:TAG',
      });
    }
    return formatReference(ref);
  });
}

/**
 * Points every target at the source's entry; returns an `image` record per new
 * name. Under a store lease (lease.ts), so an img-prune cannot sweep the
 * source's blobs between the lookup and the new names (after an img-rm of the
 * source); `onWait` is told when a running prune makes it wait.
 */
export async function tagImage(store: Store, source: string, targets: string[], onWait?: () => void): Promise<ImageRecord[]> {
  const names = targetNames(targets);
  // Outside the lease first: an unknown source is reported without touching the store.
  await findLocalImage(store, source);
  const { withLease } = await import('@conveyor/lib-common/lease');
  return withLease(store, () => tagLeased(store, source, names), { onWait });
}

async function tagLeased(store: Store, source: string, names: string[]): Promise<ImageRecord[]> {
  const { entry } = await findLocalImage(store, source);
  // Read and validated first: a name is never given to an image the store cannot describe.
  const record = await imageRecordFromStore(store, entry);
  const annotations = Object.fromEntries(Object.entries(entry.annotations ?? {}).filter(([key]) => !NAME_ANNOTATIONS.has(key)));
  const records: ImageRecord[] = [];
  for (const name of names) {
    await store.tagManifest(name, {
      mediaType: entry.mediaType,
      digest: entry.digest,
      size: entry.size,
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    });
    records.push({ ...record, ref: name });
  }
  return records;
}
