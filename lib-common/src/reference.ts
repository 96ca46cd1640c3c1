/**
 * Image references, normalised exactly as Docker (distribution/reference) does:
 * `alpine` → `docker.io/library/alpine:latest`; a first component with a dot, a
 * port or `localhost` is a registry host; `@sha256:` pins a digest; with a
 * digest and no tag, no `latest` is implied.
 */
import { SHA256_DIGEST } from './digest.js';
import { ConveyorError } from './errors.js';

export const DEFAULT_REGISTRY = 'docker.io';
/** Where docker.io's API actually lives. */
const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export interface Reference {
  /** Registry host as written, with port: `docker.io`, `localhost:5000`. */
  registry: string;
  /** Repository path: `library/alpine`. */
  repository: string;
  tag?: string;
  digest?: string;
}

export function parseReference(input: string): Reference {
  const raw = input.trim();
  const fail = (why: string): never => {
    throw new ConveyorError('ERR_REF_INVALID', `invalid reference ${JSON.stringify(input)}: ${why}`, {
      hint: 'use [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], e.g. alpine:3.20 or localhost:5000/team/app@sha256:…',
    });
  };
  if (raw === '') fail('empty');
  let rest = raw;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) fail('malformed digest');
    if (digest.startsWith('sha256:') && !SHA256_DIGEST.test(digest)) fail('a sha256 digest is 64 lowercase hex characters');
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`malformed tag ${JSON.stringify(tag)}`);
  }
  if (rest === '') fail('missing repository name');
  let registry = DEFAULT_REGISTRY;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
      registry = first;
      path = rest.slice(slash + 1);
      if (!DOMAIN.test(registry)) fail(`malformed registry host ${JSON.stringify(registry)}`);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DEFAULT_REGISTRY;
  if (registry === DEFAULT_REGISTRY && !path.includes('/')) path = `library/${path}`;
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT.test(component)) {
      fail(/[A-Z]/.test(component) ? 'repository name must be lowercase' : `malformed path component ${JSON.stringify(component)}`);
    }
  }
  if (registry.length + 1 + path.length > 255) fail('name longer than 255 characters');
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository: path, tag, digest };
}

/** `docker.io/library/alpine:latest`, `localhost:5000/app@sha256:…`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** Docker's short form for humans: `alpine:latest`, `localhost:5000/app:v1`. */
export function familiarName(ref: Reference): string {
  let name = ref.registry === DEFAULT_REGISTRY ? ref.repository.replace(/^library\//, '') : `${ref.registry}/${ref.repository}`;
  if (ref.tag) name += `:${ref.tag}`;
  if (ref.digest) name += `@${ref.digest}`;
  return name;
}

export function normalizeReference(input: string): string {
  return formatReference(parseReference(input));
}

/** The host the registry API is reached at (docker.io's lives elsewhere). */
export function registryApiHost(registry: string): string {
  return registry === DEFAULT_REGISTRY ? DOCKER_HUB_API_HOST : registry;
}

/**
 * Registries on loopback are reached over plain HTTP when HTTPS fails, as
 * Docker does for its built-in insecure range.
 */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '');
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
