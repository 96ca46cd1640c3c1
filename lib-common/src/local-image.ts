/**
 * Finding an image in the store by what a user typed: a reference, normalised
 * as Docker does (`app:dev` → `docker.io/library/app:dev`), looked up in
 * index.json by name; a reference pinned by digest (`NAME@sha256:…`) also
 * matches an entry of the same repository whose manifest (or the index it was
 * chosen from) has that digest, as `docker tag NAME@DIGEST` does. Used by
 * img-tag and img-push.
 *
 * Reads index.json only (blobs are the caller's to check). Throws
 * ERR_REF_INVALID for a malformed reference and ERR_IMAGE_NOT_FOUND when the
 * store holds nothing by that name.
 */
import { ConveyorError } from './errors.js';
import type { Descriptor } from './records.js';
import { formatReference, parseReference, type Reference } from './reference.js';
import { REF_NAME_ANNOTATION, type Store } from './store.js';

/** img-fetch's annotation on an entry chosen from an index: the index digest. */
const INDEX_DIGEST_ANNOTATION = 'io.conveyor.index.digest';

export interface LocalImage {
  /** The normalised reference the user meant. */
  name: string;
  reference: Reference;
  /** The store's index.json entry (a manifest, or an index another tool stored). */
  entry: Descriptor;
}

export async function findLocalImage(store: Store, input: string): Promise<LocalImage> {
  const reference = parseReference(input);
  const name = formatReference(reference);
  const entries = (await store.indexEntries()).map(({ entry }) => entry);
  let entry = entries.find((e) => e.annotations?.[REF_NAME_ANNOTATION] === name);
  if (!entry && reference.digest) {
    entry = entries.find((e) => {
      const stored = e.annotations?.[REF_NAME_ANNOTATION];
      if (e.digest !== reference.digest && e.annotations?.[INDEX_DIGEST_ANNOTATION] !== reference.digest) return false;
      try {
        const other = parseReference(stored ?? '');
        return other.registry === reference.registry && other.repository === reference.repository;
      } catch {
        return false;
      }
    });
  }
  if (!entry) {
    throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${name} is not in the store ${store.root}`, {
      hint: 'pull it with img-fetch, or name it with img-tag; img-ls lists what the store holds',
    });
  }
  return { name, reference, entry };
}
