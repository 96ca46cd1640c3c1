/**
 * Images a broken or missing index.json no longer names, found among the
 * blobs: every manifest or index blob that no other index blob lists and no
 * salvaged entry reaches becomes a nameless index.json entry (digest only, as
 * an untagged image), so --repair keeps its content instead of sweeping it as
 * orphaned. `img-tag` names it again; `img-prune -a` removes it.
 *
 * Blobs are read only when they can be a manifest: a regular file (no link
 * followed) of at most MAX_JSON_BLOB_BYTES whose digest checks and that
 * parses as one. Unreadable blobs are skipped (their problems are reported by
 * blobs.ts).
 *
 * Failure: I/O errors other than what a blob is propagate.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SHA256_HEX } from '@conveyor/lib-common/digest';
import { INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import type { Descriptor } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { checkBlob } from './blob-read.js';

interface Found {
  descriptor: Descriptor;
  children: string[];
}

/** The media type of a parsed manifest or index blob, or undefined when it is neither. Pure. */
export function manifestMediaType(value: unknown): string | undefined {
  const m = value as { schemaVersion?: unknown; mediaType?: unknown; manifests?: unknown; layers?: unknown; config?: unknown } | null;
  if (!m || typeof m !== 'object' || m.schemaVersion !== 2) return undefined;
  if (typeof m.mediaType === 'string') return MANIFEST_MEDIA_TYPES.includes(m.mediaType) || INDEX_MEDIA_TYPES.includes(m.mediaType) ? m.mediaType : undefined;
  // OCI allows the field to be absent: tell by the shape.
  if (Array.isArray(m.manifests)) return MEDIA_TYPES.ociIndex;
  if (Array.isArray(m.layers) && m.config && typeof m.config === 'object') return MEDIA_TYPES.ociManifest;
  return undefined;
}

/** Nameless entries for the images among the blobs that `kept` (the salvaged entries) do not reach. */
export async function unnamedImages(store: Store, kept: unknown[]): Promise<Descriptor[]> {
  const names = await readdir(store.blobsDir).catch(() => [] as string[]);
  const found = new Map<string, Found>();
  for (const hex of names.sort()) {
    if (!SHA256_HEX.test(hex)) continue;
    const digest = `sha256:${hex}`;
    const state = await checkBlob(join(store.blobsDir, hex), digest, { keep: true });
    if (state.kind !== 'ok' || !state.data || state.data[0] !== 0x7b) continue;
    let value: unknown;
    try {
      value = JSON.parse(state.data.toString('utf8'));
    } catch {
      continue;
    }
    const mediaType = manifestMediaType(value);
    if (!mediaType) continue;
    const list = (value as { manifests?: unknown }).manifests;
    const children = Array.isArray(list) ? list.map((d) => (d as Descriptor | null)?.digest).filter((d): d is string => typeof d === 'string') : [];
    found.set(digest, { descriptor: { mediaType, digest, size: state.size }, children });
  }
  // Reached: the kept entries, and every child of an index blob (a platform manifest is not an image of its own).
  const reached = new Set<string>();
  const reach = (digest: string, depth = 0) => {
    if (reached.has(digest) || depth > 8) return;
    reached.add(digest);
    for (const child of found.get(digest)?.children ?? []) reach(child, depth + 1);
  };
  for (const entry of kept) {
    const digest = (entry as Descriptor | null)?.digest;
    if (typeof digest === 'string') reach(digest);
  }
  for (const { children } of found.values()) for (const child of children) reached.add(child);
  return [...found.values()].filter(({ descriptor }) => !reached.has(descriptor.digest)).map(({ descriptor }) => descriptor);
}
