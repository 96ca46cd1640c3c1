/**
 * Removing image references from the store's index.json, as docker rmi
 * untags: one target at a time, under the index lock, written atomically.
 * Blobs and unpacked layers stay: img-prune (or img-rm --prune) frees them.
 *
 * A reference that leaves its image with other references is always
 * removed. Removing the last reference of an image a container was made from
 * (running or stopped) is refused with ERR_IMAGE_IN_USE unless `force`; the
 * container keeps its image's blobs and layers either way (the gc marks them).
 *
 * Failure: ERR_IMAGE_NOT_FOUND when the store has nothing by that name or
 * digest (or a record's reference now points at another image);
 * ERR_USAGE for an ID prefix that matches several images; ERR_IMAGE_IN_USE;
 * ERR_STORE_LOCKED / ERR_STORE_CORRUPT from the index. Nothing is written
 * when a target fails.
 */
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { imageDigests, type UntaggedRecord } from '@conveyor/lib-common/gc';
import { withLock } from '@conveyor/lib-common/lock';
import type { Descriptor } from '@conveyor/lib-common/records';
import { exists, indexEntryProblem, REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';
import type { Target } from './targets.js';

/** img-fetch's annotation on an entry chosen from an index: the index digest. */
const INDEX_DIGEST_ANNOTATION = 'io.conveyor.index.digest';

/** A container as img-rm needs it: which image it was made from. */
export interface ContainerUse {
  id: string;
  name?: string;
  /** Manifest digest. */
  image?: string;
  ref?: string;
  status?: string;
}

/** An image left with no reference: gone from the store's images; its blobs go at the next prune. */
export interface DeletedRecord {
  type: 'deleted';
  v: 1;
  digest: string;
  store: string;
}

export interface RemoveOptions {
  store: Store;
  force?: boolean;
  /** The store's containers, read under the index lock. */
  containers: () => Promise<ContainerUse[]>;
  write: (record: UntaggedRecord | DeletedRecord) => Promise<void>;
}

function refOf(entry: Descriptor): string | undefined {
  return entry.annotations?.[REF_NAME_ANNOTATION];
}

/** Whether the entry is, or was chosen from, or contains (an index) `digest`. */
async function entryHasDigest(store: Store, entry: Descriptor, digest: string): Promise<boolean> {
  if (entry.digest === digest || entry.annotations?.[INDEX_DIGEST_ANNOTATION] === digest) return true;
  return (await imageDigests(store, entry.digest)).has(digest);
}

/** The positions in `entries` the target names; throws when it names none (or, a prefix, several images). */
async function select(store: Store, entries: { entry: Descriptor; position: number }[], target: Target): Promise<number[]> {
  const notFound = (what: string) =>
    new ConveyorError('ERR_IMAGE_NOT_FOUND', `${target.source}: no such image: ${what}`, { hint: 'img-ls lists the images of the store' });
  if (target.kind === 'ref' || (target.kind === 'prefix' && target.ref)) {
    const ref = target.kind === 'ref' ? target.ref : target.ref!;
    const named = entries.filter(({ entry }) => refOf(entry) === ref);
    if (named.length > 0) {
      if (target.kind === 'ref' && target.expect) {
        const expect = target.expect;
        const still = named.filter(({ entry }) => expect.includes(entry.digest) || expect.includes(entry.annotations?.[INDEX_DIGEST_ANNOTATION] ?? ''));
        if (still.length === 0) {
          throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${target.source}: ${ref} now points at ${named[0].entry.digest}, not ${expect[0]}`, {
            hint: 'the tag moved since the record was made; list the images again with img-ls',
          });
        }
        return still.map(({ position }) => position);
      }
      return named.map(({ position }) => position);
    }
    if (target.kind === 'ref') throw notFound(ref);
  }
  if (target.kind === 'digest') {
    const hits: number[] = [];
    for (const { entry, position } of entries) if (await entryHasDigest(store, entry, target.digest)) hits.push(position);
    if (hits.length === 0) throw notFound(target.digest);
    return hits;
  }
  // An image ID prefix: every reference of the one image whose digest starts with it.
  const prefix = `sha256:${(target as { hex: string }).hex}`;
  const byImage = new Map<string, number[]>();
  for (const { entry, position } of entries) {
    for (const digest of [entry.digest, ...(await imageDigests(store, entry.digest))]) {
      if (!digest.startsWith(prefix)) continue;
      byImage.set(entry.digest, [...(byImage.get(entry.digest) ?? []), position]);
      break;
    }
  }
  if (byImage.size === 0) throw notFound(target.input);
  if (byImage.size > 1) {
    throw new ConveyorError('ERR_USAGE', `${target.source}: ${target.input} matches ${byImage.size} images: ${[...byImage.keys()].join(', ')}`, {
      hint: 'give more digits of the digest',
    });
  }
  return [...byImage.values()][0];
}

/**
 * Removes the references `target` names. Resolves after writing an `untagged`
 * record per reference and a `deleted` record per image left without one.
 */
export async function removeTarget(target: Target, options: RemoveOptions): Promise<void> {
  const { store } = options;
  const indexPath = join(store.root, 'index.json');
  if (!(await exists(indexPath))) {
    throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${target.source}: no such image: ${target.input} (the store ${store.root} holds no images)`);
  }
  const records: (UntaggedRecord | DeletedRecord)[] = [];
  await withLock(store.lockPath('index'), async () => {
    const index = await store.readIndex();
    // Well-formed entries only are candidates; malformed ones stay where they are (indexEntryProblem, as Store.indexEntries).
    const entries = (index.manifests as unknown[]).flatMap((entry, position) => (indexEntryProblem(entry) ? [] : [{ entry: entry as Descriptor, position }]));
    const chosen = new Set(await select(store, entries, target));
    const left = entries.filter(({ position }) => !chosen.has(position));
    const gone = [...new Set(entries.filter(({ position }) => chosen.has(position)).map(({ entry }) => entry.digest))].filter(
      (digest) => !left.some(({ entry }) => entry.digest === digest),
    );
    if (gone.length > 0 && !options.force) {
      const containers = await options.containers();
      for (const digest of gone) {
        const digests = await imageDigests(store, digest);
        const refs = entries.filter(({ entry, position }) => chosen.has(position) && entry.digest === digest).map(({ entry }) => refOf(entry));
        const user = containers.find((c) => (c.image ? digests.has(c.image) : c.ref !== undefined && refs.includes(c.ref)));
        if (user) {
          throw new ConveyorError(
            'ERR_IMAGE_IN_USE',
            `${target.source}: cannot remove ${target.input}: container ${user.name ?? user.id.slice(0, 12)} (${user.status ?? 'unknown'}) uses image ${digest}`,
            { hint: 'remove the container first (ctr-rm), or untag anyway with -f' },
          );
        }
      }
    }
    for (const { entry, position } of entries) {
      if (chosen.has(position)) records.push({ type: 'untagged', v: 1, ref: refOf(entry) ?? entry.digest, digest: entry.digest, store: store.root });
    }
    for (const digest of gone) records.push({ type: 'deleted', v: 1, digest, store: store.root });
    const manifests = (index.manifests as unknown[]).filter((_, position) => !chosen.has(position));
    await store.writeFileAtomic(indexPath, `${JSON.stringify({ ...index, manifests }, null, 2)}\n`);
  });
  for (const record of records) await options.write(record);
}
