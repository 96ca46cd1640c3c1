/**
 * Finding an image in the store by what a user typed. An index.json entry
 * answers to every name it carries: img-fetch's normalised
 * `org.opencontainers.image.ref.name`, and the literal names other tools
 * write there (skopeo and umoci: a short name `mybox:short` or a bare tag
 * `short`; containerd: `io.containerd.image.name`), each read both as written
 * and normalised as Docker does (`mybox:short` → `docker.io/library/mybox:short`).
 * A reference pinned by digest (`NAME@sha256:…`) also matches an entry of the
 * same repository whose manifest (or the index it was chosen from) has that
 * digest, as `docker tag NAME@DIGEST` does; with byDigest, a bare
 * `sha256:…` finds the entry of that digest. Used by img-fetch (--pull never),
 * img-tag, img-push, img-inspect and img-history.
 *
 * Reads index.json only (blobs are the caller's to check). Throws
 * ERR_REF_INVALID for a malformed reference and ERR_IMAGE_NOT_FOUND when the
 * store holds nothing by that name.
 */
import { SHA256_DIGEST } from './digest.js';
import { ConveyorError } from './errors.js';
import type { Descriptor } from './records.js';
import { formatReference, parseReference, type Reference } from './reference.js';
import { IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, type Store } from './store.js';

/** img-fetch's annotation on an entry chosen from an index: the index digest. */
export const INDEX_DIGEST_ANNOTATION = 'io.conveyor.index.digest';

export interface LocalImage {
  /** The normalised reference the user meant. */
  name: string;
  reference: Reference;
  /** The store's index.json entry (a manifest, or an index another tool stored). */
  entry: Descriptor;
}

/** The names an entry was written under (ref.name first, then containerd's), as written. */
export function literalNames(entry: Descriptor): string[] {
  const names = [entry.annotations?.[REF_NAME_ANNOTATION], entry.annotations?.[IMAGE_NAME_ANNOTATION]];
  return [...new Set(names.filter((n): n is string => typeof n === 'string' && n !== ''))];
}

/** A literal name read as a reference (`mybox:short` → `docker.io/library/mybox:short`), or undefined when it is none. */
export function normalisedName(literal: string): Reference | undefined {
  try {
    return parseReference(literal);
  } catch {
    return undefined;
  }
}

/** The normalised references an entry answers to (each literal name that parses). */
export function entryReferences(entry: Descriptor): Reference[] {
  return literalNames(entry)
    .map(normalisedName)
    .filter((r): r is Reference => r !== undefined);
}

/** The digest a registry knows the image by: the index it was chosen from, else its manifest's. */
export function repoDigestOf(entry: Descriptor): string {
  return entry.annotations?.[INDEX_DIGEST_ANNOTATION] ?? entry.digest;
}

/** Whether the entry is named `input` (as written) or the reference it normalises to. */
export function entryHasName(entry: Descriptor, input: string, reference: Reference): boolean {
  const name = formatReference(reference);
  if (literalNames(entry).includes(input.trim())) return true;
  return entryReferences(entry).some((r) => formatReference(r) === name);
}

/** The entry `input` names, by name first, then (for `NAME@sha256:`) by digest within the repository; undefined when none. */
export interface LookupOptions {
  /**
   * A bare `sha256:…` finds the entry of that digest (an unnamed one, as img-ls
   * lists it); as a reference it would read as repository `sha256`. Only for
   * tools that describe an image: its LocalImage has no registry to push to.
   */
  byDigest?: boolean;
}

export async function lookupLocalImage(store: Store, input: string, options: LookupOptions = {}): Promise<LocalImage | undefined> {
  if (options.byDigest && SHA256_DIGEST.test(input)) {
    const entry = (await store.indexEntries()).find(({ entry }) => entry.digest === input)?.entry;
    return entry ? { name: input, reference: { registry: '', repository: '', digest: input }, entry } : undefined;
  }
  const reference = parseReference(input);
  const name = formatReference(reference);
  const entries = (await store.indexEntries()).map(({ entry }) => entry);
  // The name img-fetch and img-tag write wins over another tool's literal name that reads the same.
  let entry = entries.find((e) => e.annotations?.[REF_NAME_ANNOTATION] === name) ?? entries.find((e) => entryHasName(e, input, reference));
  if (!entry && reference.digest) {
    entry = entries.find(
      (e) =>
        (e.digest === reference.digest || e.annotations?.[INDEX_DIGEST_ANNOTATION] === reference.digest) &&
        entryReferences(e).some((other) => other.registry === reference.registry && other.repository === reference.repository),
    );
  }
  return entry ? { name, reference, entry } : undefined;
}

export async function findLocalImage(store: Store, input: string, options: LookupOptions = {}): Promise<LocalImage> {
  const found = await lookupLocalImage(store, input, options);
  if (!found) {
    throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${normaliseForMessage(input)} is not in the store ${store.root}`, {
      hint: 'pull it with img-fetch, or name it with img-tag; img-ls lists what the store holds',
    });
  }
  return found;
}

function normaliseForMessage(input: string): string {
  const reference = normalisedName(input);
  return reference ? formatReference(reference) : JSON.stringify(input);
}
