/**
 * What changes when ctr-spawn runs rootless (inside the user namespace of the
 * store's keeper, lib-common/rootless: uid 0 there is the user):
 *
 *  - the runtime's state goes under the store (`<store>/runtime`): runc needs
 *    a --root it can write, and the control-plane tools find it in
 *    state.json `runtimeRoot` (ctr-exec joins the container's own user
 *    namespace through its init, ctr-stop/ctr-kill signal from outside, ctr-rm
 *    removes inside the keeper: see lib-common container/runtime.ts);
 *  - cgroups: runc's rootless cgroup manager can only use a cgroup the user
 *    was delegated. By convention root creates `conveyor-user-<uid>` (uid: the
 *    user's uid outside) in every cgroup v1 hierarchy (/sys/fs/cgroup/<ctrl>/)
 *    and chowns it (and its files) to the user, or on cgroup v2 one directory
 *    /sys/fs/cgroup/conveyor-user-<uid> owned by the user with the wanted
 *    controllers in its parent's subtree_control. The container's cgroup is
 *    then `/conveyor-user-<uid>/<id>`. Without one, a resource limit is
 *    refused (ERR_CGROUP, exit 125: never silently ignored) and a container
 *    without limits runs with no cgroup of its own (the spec names none, so
 *    runc's rootless manager skips what it may not create);
 *  - which ids are mapped (the keeper's uid_map/gid_map: the user's range of
 *    /etc/subuid, or only the user): devpts's gid=5 and ping_group_range
 *    must name mapped groups.
 *
 * Failure: delegatedCgroup throws ERR_CGROUP when limits are asked for and
 * nothing is delegated; the readers return undefined/[] for what they cannot
 * read.
 */
import { accessSync, constants, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { isMapped, type MapLine, parseMap } from '@conveyor/lib-common/rootless/subid';

export { isMapped };
/** One line of a uid_map/gid_map (lib-common rootless/subid). */
export type IdRange = MapLine;

/** The highest inside id `ranges` map (0 when they map none). Pure. */
export function highestMapped(ranges: IdRange[]): number {
  return ranges.reduce((max, r) => Math.max(max, r.inside + r.count - 1), 0);
}

/** The user's own uid outside: what inside uid 0 maps to (undefined when 0 is unmapped). Pure. */
export function outsideIdOf(ranges: IdRange[], inside = 0): number | undefined {
  const range = ranges.find((r) => inside >= r.inside && inside < r.inside + r.count);
  return range ? range.outside + (inside - range.inside) : undefined;
}

/** The name of the user's delegated cgroup directory, in every hierarchy. */
export function delegatedName(uid: number): string {
  return `conveyor-user-${uid}`;
}

export interface RootlessFacts {
  uidMap: IdRange[];
  gidMap: IdRange[];
  /** The user's uid outside the namespace (names the delegated cgroup). */
  outsideUid: number;
}

/** This process's mapping (it runs inside the keeper), from /proc/self. */
export function readRootlessFacts(): RootlessFacts {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  const uidMap = parseMap(read('/proc/self/uid_map'));
  const gidMap = parseMap(read('/proc/self/gid_map'));
  return { uidMap, gidMap, outsideUid: outsideIdOf(uidMap) ?? 0 };
}

const CGROUP_ROOT = '/sys/fs/cgroup';

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The directories the delegated cgroup must have, and which of them are
 * missing or not the user's: on v1 one per hierarchy (runc joins every one
 * when given a path), on v2 the one directory.
 */
export function delegationGaps(uid: number, root = CGROUP_ROOT): { base: string; missing: string[] } {
  const name = delegatedName(uid);
  if (existsSync(join(root, 'cgroup.controllers'))) {
    const dir = join(root, name);
    return { base: dir, missing: writable(dir) && writable(join(dir, 'cgroup.procs')) ? [] : [dir] };
  }
  let hierarchies: string[] = [];
  try {
    hierarchies = readdirSync(root).filter((h) => existsSync(join(root, h, 'cgroup.procs')));
  } catch {
    // no cgroupfs at all
  }
  const dirs = hierarchies.map((h) => join(root, h, name));
  const missing = dirs.filter((dir) => !writable(dir) || !writable(join(dir, 'cgroup.procs')));
  return { base: join(root, '<controller>', name), missing: hierarchies.length === 0 ? [join(root, name)] : missing };
}

/**
 * The container's cgroupsPath rootless: under the user's delegated cgroup
 * when there is one; '' (none) when there is not and no limit is asked for.
 * Throws ERR_CGROUP when a limit is asked for and nothing is delegated.
 */
export function rootlessCgroupsPath(id: string, uid: number, limits: string[], root = CGROUP_ROOT): string {
  const { base, missing } = delegationGaps(uid, root);
  if (missing.length === 0) return `/${delegatedName(uid)}/${id}`;
  if (limits.length === 0) return '';
  throw new ConveyorError('ERR_CGROUP', `${limits.join(', ')} needs a cgroup delegated to you (uid ${uid}): ${base} is missing or not yours (${missing[0]})`, {
    hint: `ask root to create ${base} and chown it to you (see ctr-spawn's README, Rootless), or run without limits`,
  });
}
