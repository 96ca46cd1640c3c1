/**
 * Where a blob may be mounted from instead of uploaded: other repositories of
 * the same registry that hold it. The store knows some: every reference it
 * holds on that registry (pulled from there, or pushed there under that
 * name) names a repository with that image's blobs; so do the repositories
 * this run has already pushed to. The registry decides: a mount it refuses
 * becomes a plain upload (upload.ts).
 *
 * Best effort by design: an entry whose manifest cannot be read or parsed is
 * skipped (the push reports the image's own problems, not its neighbours').
 * Never throws for a store entry; the store's own read errors propagate.
 */
import { parseReference } from '@conveyor/lib-common/reference';
import { REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';

/** At most this many repositories are tried per blob: each refused mount costs a round trip. */
export const MAX_MOUNT_SOURCES = 3;

/** Repositories holding each blob, learnt from the store and from this run's pushes: registry → digest → repositories. */
export class MountSources {
  private readonly known = new Map<string, Map<string, Set<string>>>();
  private readonly scanned = new Set<string>();

  /** Remembers that `repository` on `registry` now holds these blobs. */
  add(registry: string, repository: string, digests: Iterable<string>): void {
    let byDigest = this.known.get(registry);
    if (!byDigest) {
      byDigest = new Map();
      this.known.set(registry, byDigest);
    }
    for (const digest of digests) {
      let repos = byDigest.get(digest);
      if (!repos) {
        repos = new Set();
        byDigest.set(digest, repos);
      }
      repos.add(repository);
    }
  }

  /** Repositories other than `repository` on `registry` known to hold `digest`, at most MAX_MOUNT_SOURCES. */
  sources(registry: string, repository: string, digest: string): string[] {
    const repos = this.known.get(registry)?.get(digest);
    return [...(repos ?? [])].filter((r) => r !== repository).slice(0, MAX_MOUNT_SOURCES);
  }

  /** Learns, once per registry, which repositories the store's references on it hold which blobs. */
  async scanStore(store: Store, registry: string): Promise<void> {
    if (this.scanned.has(registry)) return;
    this.scanned.add(registry);
    for (const { entry } of await store.indexEntries()) {
      let ref;
      try {
        ref = parseReference(entry.annotations?.[REF_NAME_ANNOTATION] ?? '');
      } catch {
        continue;
      }
      if (ref.registry !== registry) continue;
      this.add(registry, ref.repository, await blobsOf(store, entry.digest));
    }
  }
}

/** Config and layer digests of a stored manifest, or of every manifest of a stored index; none when unreadable. */
async function blobsOf(store: Store, digest: string, depth = 0): Promise<string[]> {
  let parsed: Record<string, unknown>;
  try {
    parsed = await store.readJsonBlob<Record<string, unknown>>(digest);
  } catch {
    return [];
  }
  if (!parsed || typeof parsed !== 'object') return [];
  if (Array.isArray(parsed.manifests)) {
    if (depth > 0) return [];
    const out: string[] = [];
    for (const child of parsed.manifests as { digest?: unknown }[]) {
      if (typeof child?.digest === 'string') out.push(...(await blobsOf(store, child.digest, depth + 1)));
    }
    return out;
  }
  const descriptors = [parsed.config, ...(Array.isArray(parsed.layers) ? parsed.layers : [])] as { digest?: unknown }[];
  return descriptors.flatMap((d) => (typeof d?.digest === 'string' ? [d.digest] : []));
}
