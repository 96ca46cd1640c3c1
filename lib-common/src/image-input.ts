/**
 * The local images a describing tool (img-inspect, img-history) acts on:
 * references from its arguments or, with none, from stdin (bare lines, or
 * `image`/`rootfs`/`mount` records by their `ref`; other records pass
 * through), each found in the store (local-image: every name an entry
 * carries) and read whole (image: manifest and config validated).
 *
 * A reference that is malformed, not in the store, or whose blobs are
 * missing, corrupt or not valid JSON is reported through `error` (and as an
 * `error` record for the tools downstream) and the others still run; the
 * result is 0, or the first failure's exit code. What the input iterator or
 * `write` throw (a bad input line → ERR_INPUT_JSON naming `stdin:N`, a closed
 * stdout) ends the run.
 */
import type { ConveyorError } from './errors.js';
import { readStoredImage, type StoredImage } from './image.js';
import { findLocalImage, type LocalImage } from './local-image.js';
import { eachReference, type ReferenceItem } from './reference-input.js';
import type { Store } from './store.js';

/** The record types whose `ref` names an image to describe. */
export const IMAGE_RECORD_TYPES: ReadonlySet<string> = new Set(['image', 'rootfs', 'mount']);

export interface LocalImageFound extends StoredImage {
  local: LocalImage;
}

export interface EachLocalImageOptions {
  /** Describes one image (writes its records). */
  onImage: (image: LocalImageFound) => Promise<void>;
  /** Writes a record that passes through. */
  write: (record: Record<string, unknown>) => Promise<void>;
  /** Told about each reference that failed. */
  error: (error: ConveyorError) => void;
}

/** Runs onImage for each reference of `items` in order (reference-input's eachReference policy); resolves with the run's exit code. */
export function eachLocalImage(store: Store, items: Iterable<ReferenceItem> | AsyncIterable<ReferenceItem>, options: EachLocalImageOptions): Promise<number> {
  return eachReference(
    items,
    async (item) => {
      const local = await findLocalImage(store, item.ref, { byDigest: true });
      const stored = await readStoredImage(store, local.entry);
      await options.onImage({ ...stored, local });
    },
    options,
  );
}
