/**
 * Listing the store's images. Pure library code: takes a Store and options,
 * returns records; never prints.
 */
import { imageRecordFromStore } from '@conveyor/lib-common/image';
import type { ImageRecord } from '@conveyor/lib-common/records';
import { familiarName, parseReference } from '@conveyor/lib-common/reference';
import { REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';

export interface ListOptions {
  /** Reference patterns (`alpine`, `alpine:3*`, `localhost:5000/*`); an image matching any is listed. */
  patterns?: string[];
  /** Called for an index entry that cannot be read (missing or corrupt blob); listing goes on. */
  onBroken?: (ref: string, error: Error) => void;
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
 * A pattern matches the full reference or the familiar one (`alpine:latest`);
 * without a tag it matches every tag of the repository, as `docker images NAME` does.
 */
export function matchesPattern(ref: string, pattern: string): boolean {
  let full: string;
  let familiar: string;
  try {
    const parsed = parseReference(ref);
    full = ref;
    familiar = familiarName(parsed);
  } catch {
    full = familiar = ref;
  }
  const hasTag = /:[^/]*$/.test(pattern) || pattern.includes('@');
  const candidates = [full, familiar];
  if (!hasTag) candidates.push(...candidates.map((c) => c.replace(/[:@][^/]*$/, '')));
  if (!pattern.includes('*') && !pattern.includes('?') && !hasTag) {
    try {
      const normal = parseReference(pattern);
      return full.replace(/[:@][^/]*$/, '') === `${normal.registry}/${normal.repository}`;
    } catch {
      // Not a reference: fall through to plain matching.
    }
  }
  const re = globToRegExp(pattern);
  return candidates.some((c) => re.test(c));
}

/** Lists the images of the store's index.json; malformed entries are skipped with a warning through the store's warn. */
export async function listImages(store: Store, options: ListOptions = {}): Promise<ImageRecord[]> {
  const records: ImageRecord[] = [];
  for (const { entry } of await store.indexEntries()) {
    const ref = entry.annotations?.[REF_NAME_ANNOTATION] ?? entry.digest;
    if (options.patterns?.length && !options.patterns.some((p) => matchesPattern(ref, p))) continue;
    try {
      records.push(await imageRecordFromStore(store, entry));
    } catch (error) {
      options.onBroken?.(ref, error as Error);
    }
  }
  return records;
}
