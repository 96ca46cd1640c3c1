/**
 * Whether COPY/ADD --chown's owner can be given in this process's user
 * namespace. As root on the host every id can; rootless, img-build runs
 * inside the user's namespace keeper, where only the mapped ids exist: the
 * user's own (0 inside) and, with a subordinate range in /etc/subuid and
 * /etc/subgid, 1..N. chown to any other id fails with EINVAL, so the caller
 * keeps the files owned by 0 and warns (docs/rootless.md: single mapping).
 *
 * Failure: never throws; an unreadable map (no /proc) counts as mapping
 * everything, so the chown is tried and its own error reported.
 */
import { readFile } from 'node:fs/promises';

/** Whether `id` falls in one of the `inside outside count` lines of a uid_map/gid_map text. Pure. */
export function idMapped(mapText: string, id: number): boolean {
  for (const line of mapText.split('\n')) {
    const [inside, , count] = line.trim().split(/\s+/).map(Number);
    if (Number.isFinite(inside) && Number.isFinite(count) && id >= inside && id < inside + count) return true;
  }
  return false;
}

/** Whether both ids of `owner` are mapped in this process's user namespace. */
export async function ownerMapped(owner: { uid: number; gid: number }): Promise<boolean> {
  const [uidMap, gidMap] = await Promise.all([readFile('/proc/self/uid_map', 'utf8'), readFile('/proc/self/gid_map', 'utf8')]).catch(() => [
    undefined,
    undefined,
  ]);
  if (uidMap === undefined || gidMap === undefined) return true;
  return idMapped(uidMap, owner.uid) && idMapped(gidMap, owner.gid);
}
