/**
 * What img-search was asked for, from its arguments: a Docker Hub search
 * (`nginx`), a registry catalog filtered by a term (`localhost:5000/app`,
 * `--registry HOST app`), or a repository's tags (`--tags busybox`); and its
 * `--filter` conditions. Pure functions: bad arguments throw ERR_USAGE or
 * ERR_REF_INVALID, nothing else happens.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { DEFAULT_REGISTRY, parseReference } from '@conveyor/lib-common/reference';

export type SearchTarget = { kind: 'hub'; term: string } | { kind: 'catalog'; registry: string; term: string };

/** A registry host as Docker tells one: a first component with a dot, a port, or `localhost`. */
export function looksLikeRegistry(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost' || component.startsWith('[');
}

const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?$/;

/** Checks a `--registry` value or a term's registry part; docker.io's aliases become docker.io. */
export function registryHost(text: string): string {
  if (!HOST.test(text)) throw new ConveyorError('ERR_USAGE', `not a registry host: ${JSON.stringify(text)}`, { hint: 'use HOST[:PORT], e.g. localhost:5000' });
  return text === 'index.docker.io' || text === 'registry-1.docker.io' ? DEFAULT_REGISTRY : text;
}

/**
 * `nginx` → Hub search; `docker.io/nginx` → Hub search for nginx;
 * `HOST/term` or `HOST/` → the catalog of HOST filtered by term; with
 * `--registry HOST`, TERM (optional) filters that catalog.
 */
export function searchTarget(term: string | undefined, registry: string | undefined): SearchTarget {
  if (registry !== undefined) {
    const host = registryHost(registry);
    if (host === DEFAULT_REGISTRY) {
      if (!term) throw new ConveyorError('ERR_USAGE', 'a Docker Hub search needs a term', { hint: 'img-search nginx' });
      return { kind: 'hub', term };
    }
    return { kind: 'catalog', registry: host, term: term ?? '' };
  }
  if (term === undefined || term.trim() === '')
    throw new ConveyorError('ERR_USAGE', 'no search term given', { hint: 'img-search nginx, or img-search localhost:5000/ for a catalog' });
  const slash = term.indexOf('/');
  if (slash > 0 && looksLikeRegistry(term.slice(0, slash))) {
    const host = registryHost(term.slice(0, slash));
    const rest = term.slice(slash + 1);
    if (host === DEFAULT_REGISTRY) {
      if (rest === '') throw new ConveyorError('ERR_USAGE', 'a Docker Hub search needs a term', { hint: 'img-search docker.io/nginx' });
      return { kind: 'hub', term: rest };
    }
    return { kind: 'catalog', registry: host, term: rest };
  }
  return { kind: 'hub', term };
}

/** `busybox`, `localhost:5000/team/app`: the repository whose tags to list. A tag or digest in it is a usage error. */
export function tagsRepository(text: string): { registry: string; repository: string } {
  const ref = parseReference(text);
  const lastSlash = text.lastIndexOf('/');
  if (text.includes('@') || text.lastIndexOf(':') > lastSlash) {
    throw new ConveyorError('ERR_USAGE', `--tags takes a repository, not a tag or digest: ${JSON.stringify(text)}`, {
      hint: `img-search --tags ${ref.registry}/${ref.repository}`,
    });
  }
  return { registry: ref.registry, repository: ref.repository };
}

export interface HubFilters {
  minStars?: number;
  official?: boolean;
  automated?: boolean;
}

/** `stars=N`, `is-official=true|false`, `is-automated=true|false`, as `docker search --filter`. */
export function parseFilters(filters: string[]): HubFilters {
  const out: HubFilters = {};
  for (const filter of filters) {
    const eq = filter.indexOf('=');
    const key = eq < 0 ? filter : filter.slice(0, eq);
    const value = eq < 0 ? '' : filter.slice(eq + 1);
    if (key === 'stars') {
      if (!/^\d+$/.test(value)) throw new ConveyorError('ERR_USAGE', `--filter stars=N needs a whole number, got ${JSON.stringify(value)}`);
      out.minStars = Number(value);
    } else if (key === 'is-official' || key === 'is-automated') {
      if (value !== 'true' && value !== 'false') throw new ConveyorError('ERR_USAGE', `--filter ${key} must be true or false, got ${JSON.stringify(value)}`);
      out[key === 'is-official' ? 'official' : 'automated'] = value === 'true';
    } else {
      throw new ConveyorError('ERR_USAGE', `unknown filter ${JSON.stringify(filter)}`, {
        hint: 'filters: stars=N, is-official=true|false, is-automated=true|false',
      });
    }
  }
  return out;
}

export function hasFilters(filters: HubFilters): boolean {
  return filters.minStars !== undefined || filters.official !== undefined || filters.automated !== undefined;
}

/** Whether a Hub result passes the filters. */
export function passes(result: { stars: number; official: boolean; automated: boolean }, filters: HubFilters): boolean {
  if (filters.minStars !== undefined && result.stars < filters.minStars) return false;
  if (filters.official !== undefined && result.official !== filters.official) return false;
  if (filters.automated !== undefined && result.automated !== filters.automated) return false;
  return true;
}

/** The index URL (`--index-url`, CONVEYOR_INDEX_URL): http(s) only; its path (Docker's `/v1/`) is not used. */
export function indexUrl(text: string | undefined): URL {
  const raw = text && text !== '' ? text : 'https://index.docker.io/v1/';
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConveyorError('ERR_USAGE', `--index-url is not a URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConveyorError('ERR_USAGE', `--index-url must be http or https, got ${url.protocol}`);
  return url;
}
