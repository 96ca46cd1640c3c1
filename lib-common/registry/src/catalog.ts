/**
 * Finding repositories and tags: a registry's catalog (`GET /v2/_catalog`)
 * and a repository's tags (`GET /v2/<name>/tags/list`), both paginated with
 * `n`, `last` and the `Link: <...>; rel="next"` header; Docker Hub's search
 * (`GET /v1/search?q=&n=` on its index); and what a tag points at (digest,
 * media type, platforms) for `img-search --digests`.
 *
 * The registry is hostile: every page is read into memory under a size cap,
 * its JSON shape is checked, a `next` link must stay on the same endpoint of
 * the same registry, a link seen twice (a loop) or more than `maxPages` pages
 * ends the listing; a page whose body breaks off is read again (the client's
 * retry policy). Names and tags that are not valid reference parts are
 * skipped through `onInvalid` (they could not be pulled anyway).
 *
 * On failure these throw a ConveyorError: the registry's status through
 * error-map.ts (404 ERR_REGISTRY_NOT_FOUND, 401 ERR_REGISTRY_UNAUTHORIZED,
 * ...), a malformed answer or runaway pagination ERR_REGISTRY_PROTOCOL.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Platform } from '@conveyor/lib-common/records';
import { registryApiHost } from '@conveyor/lib-common/reference';
import type { RegistryClient, RepositoryRef } from './client.js';
import { responseError } from './error-map.js';
import { backoffDelay } from './retry.js';
import { firstHeader, readBody } from './transport.js';

/** A page of names is small JSON; 8 MiB holds ~100000 long names and no more. */
export const MAX_PAGE_BYTES = 8 * 1024 * 1024;
/** Pages followed before a listing is called runaway (100000 entries at the default page size). */
export const DEFAULT_MAX_PAGES = 1000;
/** Entries asked for per page (`n`): distribution serves up to 1000. */
export const DEFAULT_PAGE_SIZE = 100;

export interface PageOptions {
  /** `n` on each request. */
  pageSize?: number;
  /** Stop with ERR_REGISTRY_PROTOCOL past this many pages. */
  maxPages?: number;
  /** Told about each entry skipped as malformed. */
  onInvalid?: (message: string) => void;
  signal?: AbortSignal;
}

/** One path component of a repository name, as distribution/reference has it. */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

export function isRepositoryName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && name.split('/').every((c) => PATH_COMPONENT.test(c));
}

export function isTagName(tag: string): boolean {
  return TAG.test(tag);
}

/**
 * The path and query of a `Link: <url>; rel="next"` header, resolved against
 * the page just read, when it points at `endpoint` (the same path) on the
 * registry's own host (`host`: distribution sends relative links, some
 * registries absolute ones naming themselves); undefined when there is no
 * next link. A next link elsewhere is ERR_REGISTRY_PROTOCOL: pagination never
 * leaves the endpoint it started on, and the scheme stays the client's.
 */
export function nextPageLink(header: string | undefined, current: string, endpoint: string, host = 'registry.invalid'): string | undefined {
  if (!header) return undefined;
  // Several links may share one header: `<a>; rel="prev", <b>; rel="next"`.
  for (const part of header.split(/,(?=\s*<)/)) {
    const match = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (!match || !/(?:^|;)\s*rel="?next"?\s*(?:;|$)/i.test(match[2])) continue;
    const base = new URL(current, `http://${host}`);
    let target: URL;
    try {
      target = new URL(match[1], base);
    } catch {
      throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `the registry sent an unusable next-page link ${JSON.stringify(match[1].slice(0, 200))}`);
    }
    const sameHost = target.host === base.host && (target.protocol === 'http:' || target.protocol === 'https:');
    if (!sameHost || target.pathname !== endpoint) {
      throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `the registry's next-page link leaves ${endpoint}: ${JSON.stringify(match[1].slice(0, 200))}`);
    }
    return `${target.pathname}${target.search}`;
  }
  return undefined;
}

/** The array under `key` in a page (`repositories`, `tags`); null counts as empty, as distribution sends for a repository without tags. */
export function pageEntries(body: Buffer, key: string, what: string): string[] {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what}: the page is not JSON: ${(error as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what}: the page is not a JSON object`);
  const list = (json as Record<string, unknown>)[key];
  if (list === null || list === undefined) return [];
  if (!Array.isArray(list)) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what}: "${key}" is not an array`);
  return list.map((entry, i) => {
    if (typeof entry !== 'string') throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what}: entry ${i} of "${key}" is not a string`);
    return entry;
  });
}

/** Follows a paginated list endpoint, yielding its entries page by page. */
async function* paginate(
  client: RegistryClient,
  ref: RepositoryRef,
  endpoint: string,
  key: string,
  scope: string | undefined,
  what: string,
  options: PageOptions,
): AsyncGenerator<string> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const maxPages = options.maxPages ?? DEFAULT_MAX_PAGES;
  const seen = new Set<string>();
  let path: string | undefined = `${endpoint}?n=${pageSize}`;
  for (let page = 1; path !== undefined; page++) {
    if (page > maxPages) {
      throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what}: more than ${maxPages} pages`, {
        hint: 'the registry may be paginating in circles; a larger --page-size needs fewer pages',
      });
    }
    seen.add(path);
    const { link, body } = await readPage(client, ref, path, scope, `${what} page ${page}`, options.signal);
    const entries = pageEntries(body, key, `${what} page ${page}`);
    for (const entry of entries) yield entry;
    const next: string | undefined = link === undefined ? undefined : nextPageLink(link, path, endpoint, registryApiHost(ref.registry));
    if (next !== undefined && seen.has(next)) {
      throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what}: the next-page link ${next} was already read (a pagination loop)`);
    }
    path = next;
  }
}

/**
 * One page: the request (its head retried by the client) and its body, read
 * again from the start when it breaks off (a page is small; the client's
 * retry policy bounds the attempts and the backoff).
 */
async function readPage(
  client: RegistryClient,
  ref: RepositoryRef,
  path: string,
  scope: string | undefined,
  what: string,
  signal?: AbortSignal,
): Promise<{ link?: string; body: Buffer }> {
  const retries = client.retryPolicy.retries ?? 4;
  for (let attempt = 0; ; attempt++) {
    const res = await client.request(ref, path, { scope, signal });
    if (res.statusCode !== 200) await responseError(res, ref, what);
    try {
      return { link: firstHeader(res.headers.link), body: await readBody(res, MAX_PAGE_BYTES, what) };
    } catch (error) {
      const brokenOff = error instanceof ConveyorError && error.code === 'ERR_REGISTRY_UNAVAILABLE';
      if (!brokenOff || attempt >= retries) throw error;
      await delay(backoffDelay(client.retryPolicy, attempt), undefined, { signal });
    }
  }
}

/** The repositories of a registry's catalog (token scope `registry:catalog:*`), malformed names skipped. */
export async function* listCatalog(client: RegistryClient, registry: string, options: PageOptions = {}): AsyncGenerator<string> {
  const ref = { registry, repository: '_catalog' };
  for await (const name of paginate(client, ref, '/v2/_catalog', 'repositories', 'registry:catalog:*', `catalog of ${registry}`, options)) {
    if (isRepositoryName(name)) yield name;
    else options.onInvalid?.(`${registry}: skipping malformed repository name ${JSON.stringify(name.slice(0, 200))}`);
  }
}

/** The tags of a repository (token scope pull on it), malformed tags skipped. */
export async function* listTags(client: RegistryClient, ref: RepositoryRef, options: PageOptions = {}): AsyncGenerator<string> {
  const what = `tags of ${ref.registry}/${ref.repository}`;
  for await (const tag of paginate(client, ref, `/v2/${ref.repository}/tags/list`, 'tags', undefined, what, options)) {
    if (isTagName(tag)) yield tag;
    else options.onInvalid?.(`${ref.registry}/${ref.repository}: skipping malformed tag ${JSON.stringify(tag.slice(0, 200))}`);
  }
}

export interface TagTarget {
  digest: string;
  mediaType: string;
  /** An index's manifest platforms (attestations, `unknown/unknown`, left out), or the single manifest's from its config. */
  platforms: Platform[];
}

/** A config is small JSON; the client refuses larger ones before reading them. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/**
 * What `tag` points at: the manifest is read (verified against
 * Docker-Content-Digest) rather than HEADed, because its platforms are needed
 * too and one GET answers both; a single manifest's platform comes from its
 * config blob.
 */
export async function tagTarget(client: RegistryClient, ref: RepositoryRef, tag: string, signal?: AbortSignal): Promise<TagTarget> {
  const what = `manifest ${ref.registry}/${ref.repository}:${tag}`;
  const response = await client.getManifest(ref, tag, signal);
  // Loaded here: only --digests needs the manifest parser (start-up time).
  const { parseManifest } = await import('./manifest.js');
  const parsed = parseManifest(response, what);
  if (parsed.kind === 'index') {
    const platforms = parsed.manifests
      .map((m) => m.platform)
      .filter((p): p is Platform => p !== undefined && !(p.os === 'unknown' && p.architecture === 'unknown'))
      .map(platformOf);
    return { digest: response.digest, mediaType: parsed.mediaType, platforms };
  }
  const config = parsed.manifest.config;
  const body = await client.getSmallBlob(ref, config.digest, config.size, MAX_CONFIG_BYTES, signal);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    throw new ConveyorError('ERR_MANIFEST_INVALID', `${what}: its config is not JSON`);
  }
  const platforms = json && typeof json.os === 'string' && typeof json.architecture === 'string' ? [platformOf(json as unknown as Platform)] : [];
  return { digest: response.digest, mediaType: parsed.mediaType, platforms };
}

/** Only the platform fields, so a hostile manifest cannot smuggle others into records. */
function platformOf(p: Platform): Platform {
  const out: Platform = { os: String(p.os), architecture: String(p.architecture) };
  if (typeof p.variant === 'string' && p.variant !== '') out.variant = p.variant;
  return out;
}

/** One Docker Hub search result, in our field names. */
export interface HubResult {
  name: string;
  description: string;
  stars: number;
  official: boolean;
  automated: boolean;
}

/** Hub pages are small; this is far above any real answer. */
export const MAX_SEARCH_BYTES = 4 * 1024 * 1024;

/**
 * Parses Hub's `/v1/search` answer: `{num_pages, num_results, results:
 * [{name, description, star_count, is_official, is_automated}], page_size,
 * query, page}`. Results with no usable name are skipped; other fields default.
 */
export function parseHubSearch(body: Buffer, what: string): HubResult[] {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what}: the answer is not JSON: ${(error as Error).message}`);
  }
  const results = json && typeof json === 'object' ? (json as { results?: unknown }).results : undefined;
  if (!Array.isArray(results)) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what}: the answer has no "results" array`);
  const out: HubResult[] = [];
  for (const r of results) {
    if (!r || typeof r !== 'object') continue;
    const { name, description, star_count, is_official, is_automated } = r as Record<string, unknown>;
    if (typeof name !== 'string' || !isRepositoryName(name)) continue;
    out.push({
      name,
      description: typeof description === 'string' ? description : '',
      stars: typeof star_count === 'number' && Number.isFinite(star_count) ? star_count : 0,
      official: is_official === true,
      automated: is_automated === true,
    });
  }
  return out;
}

/**
 * Searches a Docker Hub style index (`https://index.docker.io` by default) for
 * `term`, asking for `limit` results (Hub serves 1 to 100).
 */
export async function searchIndex(client: RegistryClient, index: URL, term: string, limit: number, signal?: AbortSignal): Promise<HubResult[]> {
  const ref = { registry: index.host, repository: 'v1/search' };
  const what = `search of ${index.host}`;
  const query = new URLSearchParams({ q: term, n: String(limit) });
  const res = await client.request(ref, `/v1/search?${query}`, { scope: '', signal });
  if (res.statusCode !== 200) await responseError(res, ref, what);
  return parseHubSearch(await readBody(res, MAX_SEARCH_BYTES, what), what).slice(0, limit);
}
