/**
 * Listing the store's images. Pure library code: takes a Store and options,
 * returns records; never prints. An entry answers to every name it carries
 * (lib-common/local-image: ours, skopeo's short names and bare tags,
 * containerd's), and one image is one row, as `docker images` shows it: an
 * entry pinned by digest (`NAME@sha256:…`, what a pull by digest leaves) is
 * folded into a tagged entry of the same repository and digest, unless `all`.
 * An entry whose blobs cannot be read is reported through onBroken and skipped.
 * Entries of one digest (one image tagged many times) read its blobs once.
 */
import { imageUnpackedSize, imageRecordFromStore } from '@conveyor/lib-common/image';
import { entryReferences, literalNames, repoDigestOf } from '@conveyor/lib-common/local-image';
import type { ImageRecord } from '@conveyor/lib-common/records';
import { familiarName, formatReference, parseReference, type Reference } from '@conveyor/lib-common/reference';
import { IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';

export interface ListOptions {
  /** Reference patterns (`alpine`, `alpine:3*`, `localhost:5000/*`); an image matching any is listed. */
  patterns?: string[];
  /** Every index entry, the digest-pinned duplicates of tagged images included (`docker images -a`). */
  all?: boolean;
  /** Called for an index entry that cannot be read (missing or corrupt blob); listing goes on. */
  onBroken?: (ref: string, error: Error) => void;
}

/** An image record as img-ls prints it: with the unpacked size (Docker's SIZE) and the digest a registry knows it by. */
export interface ListedImage extends ImageRecord {
  /** Sum of the layers' unpacked sizes (compressed where unknown). */
  unpackedSize: number;
  /** The manifest digest a registry serves the image by (the index's when it was chosen from one): `docker images --digests`. */
  repoDigest: string;
}

/** Turns a glob (only `*` and `?` are special) into an anchored RegExp. */
function globToRegExp(glob: string): RegExp {
  const escaped = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`);
}

/**
 * A pattern matches a stored name as written, its normalised reference or its
 * familiar form (`alpine:latest`); without a tag it matches every tag of the
 * repository, as `docker images NAME` does.
 */
export function matchesPattern(ref: string, pattern: string): boolean {
  const candidates = [ref];
  let parsed: Reference | undefined;
  try {
    parsed = parseReference(ref);
    candidates.push(formatReference(parsed), familiarName(parsed));
  } catch {
    // A name that is no reference: matched as written only.
  }
  const hasTag = /:[^/]*$/.test(pattern) || pattern.includes('@');
  if (!hasTag) candidates.push(...candidates.map((c) => c.replace(/[:@][^/]*$/, '')));
  if (!pattern.includes('*') && !pattern.includes('?') && !hasTag && parsed) {
    try {
      const normal = parseReference(pattern);
      if (parsed.registry === normal.registry && parsed.repository === normal.repository) return true;
    } catch {
      // Not a reference: fall through to plain matching.
    }
  }
  const re = globToRegExp(pattern);
  return candidates.some((c) => re.test(c));
}

/** Whether any of the entry's names (literal or normalised) matches any pattern. */
function entryMatches(names: string[], patterns: string[]): boolean {
  return names.some((name) => patterns.some((p) => matchesPattern(name, p)));
}

/** `repo@sha256:…` pinned entries whose image a tagged entry of the same repository lists too: the duplicates docker does not show. */
export function foldPinned(images: ListedImage[]): ListedImage[] {
  const tagged = new Set<string>();
  const keyOf = (image: ListedImage, ref: Reference) => `${ref.registry}/${ref.repository}@${image.digest}`;
  const refOf = (image: ListedImage) => {
    try {
      return parseReference(image.ref);
    } catch {
      return undefined;
    }
  };
  for (const image of images) {
    const ref = refOf(image);
    if (ref?.tag) tagged.add(keyOf(image, ref));
  }
  return images.filter((image) => {
    const ref = refOf(image);
    return !(ref && !ref.tag && ref.digest && tagged.has(keyOf(image, ref)));
  });
}

/** Lists the images of the store's index.json; malformed entries are skipped with a warning through the store's warn. */
export async function listImages(store: Store, options: ListOptions = {}): Promise<ListedImage[]> {
  const records: ListedImage[] = [];
  // A store with an image tagged 1,000 times would otherwise read (and hash) its manifest, config and layer
  // trailers 1,000 times; a failure is cached too, so each of its names is reported broken.
  const byDigest = new Map<string, Promise<{ record: ImageRecord; unpackedSize: number }>>();
  const read = (entry: Parameters<typeof imageRecordFromStore>[1]) => {
    let image = byDigest.get(entry.digest);
    if (!image) {
      image = imageRecordFromStore(store, entry).then(async (record) => ({ record, unpackedSize: await imageUnpackedSize(store, record.layers) }));
      image.catch(() => {});
      byDigest.set(entry.digest, image);
    }
    return image;
  };
  for (const { entry } of await store.indexEntries()) {
    const names = literalNames(entry);
    const ref = names[0] ?? entry.digest;
    if (options.patterns?.length && !entryMatches([...names, ...entryReferences(entry).map(formatReference)], options.patterns)) continue;
    try {
      const { record, unpackedSize } = await read(entry);
      // The name as imageRecordFromStore gives it (the entry's own): the cached record may carry another entry's.
      const named = entry.annotations?.[REF_NAME_ANNOTATION] ?? entry.annotations?.[IMAGE_NAME_ANNOTATION] ?? entry.digest;
      records.push({ ...record, ref: named, unpackedSize, repoDigest: repoDigestOf(entry) });
    } catch (error) {
      options.onBroken?.(ref, error as Error);
    }
  }
  return options.all ? records : foldPinned(records);
}
