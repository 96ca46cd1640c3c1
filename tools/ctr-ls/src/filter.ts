/**
 * ctr-ls's `--filter KEY=VALUE`, as `docker ps --filter`: filters of
 * different keys must all match, several values of one key match when any
 * does. Keys: `id` (prefix), `name` (a regular expression, as Docker's),
 * `status` (created, running, exited, dead), `image` (the reference in full
 * or familiar form, its repository for every tag, or the manifest digest).
 *
 * Failure: parseFilters throws ERR_USAGE for a filter without `=`, an
 * unknown key, an unknown status or a name that is not a regular expression.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { ListedContainer } from '@conveyor/lib-common/container/targets';
import { parseReference } from '@conveyor/lib-common/reference';

export const FILTER_KEYS = ['id', 'name', 'status', 'image'] as const;
export type FilterKey = (typeof FILTER_KEYS)[number];
export const STATUSES = ['created', 'running', 'exited', 'dead'];

/** One test per key: a container passes when every key has a value that matches it. */
export type Filters = Map<FilterKey, ((container: ListedContainer) => boolean)[]>;

/** Parses `--filter` values; throws ERR_USAGE for a malformed one. */
export function parseFilters(raw: string[]): Filters {
  const filters: Filters = new Map();
  for (const text of raw) {
    const eq = text.indexOf('=');
    const key = text.slice(0, eq).trim().toLowerCase() as FilterKey;
    const value = text.slice(eq + 1);
    if (eq < 1) throw new ConveyorError('ERR_USAGE', `bad filter ${JSON.stringify(text)}`, { hint: 'a filter is KEY=VALUE, e.g. status=exited' });
    if (!FILTER_KEYS.includes(key))
      throw new ConveyorError('ERR_USAGE', `unknown filter ${JSON.stringify(key)}`, { hint: `filters are ${FILTER_KEYS.join(', ')}` });
    const tests = filters.get(key) ?? [];
    tests.push(matcher(key, value));
    filters.set(key, tests);
  }
  return filters;
}

function matcher(key: FilterKey, value: string): (container: ListedContainer) => boolean {
  switch (key) {
    case 'id':
      return (c) => value !== '' && c.id.startsWith(value.toLowerCase());
    case 'status':
      if (!STATUSES.includes(value))
        throw new ConveyorError('ERR_USAGE', `unknown status ${JSON.stringify(value)}`, { hint: `statuses are ${STATUSES.join(', ')}` });
      return (c) => c.status === value;
    case 'name': {
      let re: RegExp;
      try {
        re = new RegExp(value);
      } catch (error) {
        throw new ConveyorError('ERR_USAGE', `name filter ${JSON.stringify(value)} is not a regular expression: ${(error as Error).message}`);
      }
      return (c) => c.name !== undefined && re.test(c.name);
    }
    case 'image':
      return (c) => imageMatches(c, value);
  }
}

/**
 * Whether `value` names the container's image: its reference in any form
 * Docker accepts (`busybox`, `busybox:latest`, `docker.io/library/busybox`;
 * without a tag, every tag), or its manifest digest or a prefix of it.
 */
export function imageMatches(container: ListedContainer, value: string): boolean {
  if (value === '') return false;
  const digest = container.imageDigest;
  if (digest && /^(sha256:)?[0-9a-f]{6,64}$/.test(value) && digest.startsWith(value.startsWith('sha256:') ? value : `sha256:${value}`)) return true;
  const ref = container.image;
  if (!ref) return false;
  if (ref === value) return true;
  try {
    const wanted = parseReference(value);
    const have = parseReference(ref);
    const tagGiven = /:[^/]*$/.test(value.replace(/@.*$/, ''));
    return wanted.registry === have.registry && wanted.repository === have.repository && (!tagGiven || wanted.tag === have.tag);
  } catch {
    return false;
  }
}

/** Whether a container passes every filter. */
export function matchesFilters(container: ListedContainer, filters: Filters): boolean {
  for (const tests of filters.values()) if (!tests.some((test) => test(container))) return false;
  return true;
}
