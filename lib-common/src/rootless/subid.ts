/**
 * Which ids a user namespace maps, chosen as podman does: the user's uid (and
 * gid) → 0 inside; when /etc/subuid and /etc/subgid give the user a range AND
 * newuidmap/newgidmap are installed, that range → 1..N inside as well (files
 * owned by other ids in an image then keep their owners). Otherwise a single
 * mapping: only the user's own id exists inside.
 *
 * parseSubordinateIds is pure (table-tested): lines `name-or-uid:start:count`,
 * the first one for the user counts, comments/blank/malformed lines are
 * skipped. userMapping reads the files; an unreadable file means no range.
 * Nothing here throws.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isInitialUidMap } from './detect.js';

/** A block of host ids: start..start+count-1. */
export interface IdRange {
  start: number;
  count: number;
}

/** One line of a uid_map/gid_map: `inside outside count`. */
export interface MapLine {
  inside: number;
  outside: number;
  count: number;
}

export interface IdMapping {
  /** 'range': the user's id plus a subordinate range; 'single': the user's id only. */
  kind: 'range' | 'single';
  uidMap: MapLine[];
  gidMap: MapLine[];
}

const MAX_ID = 2 ** 32 - 1;

/** The user's first subordinate range in an /etc/subuid or /etc/subgid text (by name or numeric id). */
export function parseSubordinateIds(text: string, user: { name?: string; id: number }): IdRange | undefined {
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    if (fields.length !== 3) continue;
    const [owner, start, count] = fields;
    if (owner !== user.name && owner !== String(user.id)) continue;
    if (!/^\d+$/.test(start) || !/^\d+$/.test(count)) continue;
    const range = { start: Number(start), count: Number(count) };
    if (range.count < 1 || range.start + range.count - 1 > MAX_ID - 1) continue;
    return range;
  }
  return undefined;
}

export interface MappingFacts {
  uid: number;
  gid: number;
  subuid?: IdRange;
  subgid?: IdRange;
  /** Both newuidmap and newgidmap are installed. */
  newIdMap: boolean;
}

/** The mapping for these facts: a range only when both ranges exist and the helpers to apply them. */
export function chooseMapping(facts: MappingFacts): IdMapping {
  const own = (id: number): MapLine => ({ inside: 0, outside: id, count: 1 });
  if (facts.subuid && facts.subgid && facts.newIdMap) {
    return {
      kind: 'range',
      uidMap: [own(facts.uid), { inside: 1, outside: facts.subuid.start, count: facts.subuid.count }],
      gidMap: [own(facts.gid), { inside: 1, outside: facts.subgid.start, count: facts.subgid.count }],
    };
  }
  return { kind: 'single', uidMap: [own(facts.uid)], gidMap: [own(facts.gid)] };
}

/** Whether `name` is an executable in one of PATH's directories. */
export function onPath(name: string, path: string | undefined): boolean {
  for (const dir of (path || '/usr/local/bin:/usr/bin:/bin').split(':')) {
    if (!dir.startsWith('/')) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The mapping for user `name` (uid, gid) on this host: /etc/subuid, /etc/subgid and newuidmap/newgidmap on PATH. */
export function userMapping(user: { name?: string; uid: number; gid: number }, path: string | undefined): IdMapping {
  return chooseMapping({
    uid: user.uid,
    gid: user.gid,
    subuid: parseSubordinateIds(readOr('/etc/subuid'), { name: user.name, id: user.uid }),
    subgid: parseSubordinateIds(readOr('/etc/subgid'), { name: user.name, id: user.uid }),
    newIdMap: onPath('newuidmap', path) && onPath('newgidmap', path),
  });
}

/** A map as /proc/<pid>/uid_map prints it, normalised (`0 1000 1\n1 300000 65536`), to compare with the kernel's. */
export function formatMap(lines: MapLine[]): string {
  return lines.map((l) => `${l.inside} ${l.outside} ${l.count}`).join('\n');
}

/** The kernel's /proc/<pid>/uid_map text normalised as formatMap's. */
export function normaliseMap(text: string): string {
  return text
    .trim()
    .split('\n')
    .map((line) => line.trim().split(/\s+/).join(' '))
    .filter(Boolean)
    .join('\n');
}

/** Whether `id` is inside one of a map's `inside` ranges. */
export function isMapped(lines: MapLine[], id: number): boolean {
  return lines.some((l) => id >= l.inside && id - l.inside < l.count);
}

/** A uid_map/gid_map text as MapLines (malformed lines skipped). */
export function parseMap(text: string): MapLine[] {
  const lines: MapLine[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length !== 3 || !fields.every((f) => /^\d+$/.test(f))) continue;
    lines.push({ inside: Number(fields[0]), outside: Number(fields[1]), count: Number(fields[2]) });
  }
  return lines;
}

/**
 * In a user namespace other than the initial one: whether this process can
 * chown to uid:gid (both mapped in its /proc/self/uid_map and gid_map), for
 * layer-unpack and img-build inside the keeper. Undefined in the initial
 * namespace (root can chown to anything; a user outside, to nothing).
 */
export function ownableIds(): ((uid: number, gid: number) => boolean) | undefined {
  const uidText = readOr('/proc/self/uid_map');
  const uidMap = parseMap(uidText);
  const gidMap = parseMap(readOr('/proc/self/gid_map'));
  if (uidMap.length === 0 || isInitialUidMap(uidText)) return undefined;
  return (uid, gid) => isMapped(uidMap, uid) && isMapped(gidMap, gid);
}
