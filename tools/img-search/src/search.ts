/**
 * img-search's three listings, as records: Docker Hub search results and
 * catalog entries as `repository` records, a repository's tags as `tag`
 * records (with --digests, each tag's digest and platforms, looked up a few
 * at a time, printed in the registry's order). Library code: the registry
 * client and a record sink are passed in.
 *
 * On failure: the listing's ConveyorError propagates (records already
 * written stay written). A tag whose digest cannot be looked up is reported
 * through `error` and still listed without it; the count of such failures is
 * returned so the tool can exit 1.
 */
import type { ConveyorError } from '@conveyor/lib-common/errors';
import { toConveyorError } from '@conveyor/lib-common/errors';
import type { RecordSink } from '@conveyor/lib-common/ndjson';
import { RECORD_VERSION, type RepositoryRecord, type TagRecord } from '@conveyor/lib-common/records';
import { DEFAULT_REGISTRY } from '@conveyor/lib-common/reference';
import { listCatalog, listTags, searchIndex, tagTarget } from '@conveyor/registry/catalog';
import type { RegistryClient, RepositoryRef } from '@conveyor/registry/client';
import { type HubFilters, passes } from './target.js';

export interface ListOptions {
  out: RecordSink;
  /** At most this many records (undefined: all). */
  limit?: number;
  /** `n` per catalog or tags page. */
  pageSize?: number;
  warn: (message: string) => void;
}

/** A Hub search result as a record: Hub's name (what img-fetch pulls), and where it lives. */
export function hubRecord(result: { name: string; description: string; stars: number; official: boolean; automated: boolean }): RepositoryRecord {
  return {
    type: 'repository',
    v: RECORD_VERSION,
    name: result.name,
    registry: DEFAULT_REGISTRY,
    repository: result.name.includes('/') ? result.name : `library/${result.name}`,
    description: result.description,
    stars: result.stars,
    official: result.official,
    automated: result.automated,
  };
}

export function catalogRecord(registry: string, repository: string): RepositoryRecord {
  return { type: 'repository', v: RECORD_VERSION, name: `${registry}/${repository}`, registry, repository };
}

export function tagRecord(repo: RepositoryRef, tag: string): TagRecord {
  const name = `${repo.registry}/${repo.repository}`;
  return { type: 'tag', v: RECORD_VERSION, ref: `${name}:${tag}`, name, tag, registry: repo.registry, repository: repo.repository };
}

/** Whether a catalog name matches the term: a case-insensitive substring; an empty term matches all. */
export function matchesTerm(repository: string, term: string): boolean {
  return repository.toLowerCase().includes(term.toLowerCase());
}

/** Searches Docker Hub (or the index at `index`): `limit` results asked for, then the filters, as docker search does. */
export async function searchHub(client: RegistryClient, index: URL, term: string, filters: HubFilters, options: ListOptions): Promise<void> {
  const results = await searchIndex(client, index, term, options.limit ?? 25);
  for (const result of results) if (passes(result, filters)) await options.out.write(hubRecord(result));
}

/** Lists a registry's catalog, keeping names that contain `term`. */
export async function searchCatalog(client: RegistryClient, registry: string, term: string, options: ListOptions): Promise<void> {
  let count = 0;
  for await (const repository of listCatalog(client, registry, { pageSize: options.pageSize, onInvalid: options.warn })) {
    if (!matchesTerm(repository, term)) continue;
    if (options.limit !== undefined && count >= options.limit) return;
    await options.out.write(catalogRecord(registry, repository));
    count++;
  }
}

export interface TagOptions extends ListOptions {
  /** Add each tag's digest, media type and platforms. */
  digests?: boolean;
  /** Digest look-ups in flight at once. */
  jobs?: number;
  /** Told about each tag whose digest could not be looked up. */
  error: (error: ConveyorError) => void;
}

/** Lists a repository's tags as `tag` records; returns how many digest look-ups failed. */
export async function listTagRecords(client: RegistryClient, repo: RepositoryRef, options: TagOptions): Promise<number> {
  const tags = take(listTags(client, repo, { pageSize: options.pageSize, onInvalid: options.warn }), options.limit);
  if (!options.digests) {
    for await (const tag of tags) await options.out.write(tagRecord(repo, tag));
    return 0;
  }
  let failures = 0;
  const withTarget = async (tag: string): Promise<TagRecord> => {
    const record = tagRecord(repo, tag);
    try {
      const target = await tagTarget(client, repo, tag);
      record.digest = target.digest;
      record.mediaType = target.mediaType;
      record.platforms = target.platforms;
    } catch (error) {
      failures++;
      options.error(toConveyorError(error));
    }
    return record;
  };
  for await (const record of mapOrdered(tags, options.jobs ?? 4, withTarget)) await options.out.write(record);
  return failures;
}

/** The first `limit` items of `source` (all when limit is undefined). */
export async function* take<T>(source: AsyncIterable<T>, limit: number | undefined): AsyncGenerator<T> {
  if (limit === undefined) {
    yield* source;
    return;
  }
  if (limit <= 0) return;
  let count = 0;
  for await (const item of source) {
    yield item;
    if (++count >= limit) return;
  }
}

/** `fn` over `source` with up to `jobs` calls in flight, results in source order. `fn` must not reject. */
export async function* mapOrdered<T, R>(source: AsyncIterable<T>, jobs: number, fn: (item: T) => Promise<R>): AsyncGenerator<R> {
  const pending: Promise<R>[] = [];
  for await (const item of source) {
    pending.push(fn(item));
    if (pending.length >= jobs) yield await pending.shift()!;
  }
  while (pending.length > 0) yield await pending.shift()!;
}
