/**
 * Resolving the container user (`name`, `uid`, `name:group`, `uid:gid`...) in
 * the image's own /etc/passwd and /etc/group, as Docker (moby/sys/user) does:
 * a numeric uid need not exist (gid then defaults to 0, HOME to /), a name
 * must; supplementary groups are the groups that list the user by name.
 * Shared by ctr-spawn (the container's user) and ctr-exec (`-u`).
 *
 * Failure: ERR_USER_NOT_FOUND for a name or group the files do not define or
 * a malformed spec; a missing passwd or group file reads as empty.
 */
import { ConveyorError } from '../errors.js';
import { readRootFile, type Root } from './rootfs.js';

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
  /** The user name when it is in passwd. */
  name?: string;
}

const MAX_ID = 2 ** 31 - 1;

function parseId(text: string): number | undefined {
  if (!/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n <= MAX_ID ? n : undefined;
}

export function parsePasswd(text: string): PasswdEntry[] {
  const entries: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 7) continue;
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (uid === undefined || gid === undefined) continue;
    entries.push({ name: f[0], uid, gid, home: f[5], shell: f[6] });
  }
  return entries;
}

export function parseGroup(text: string): GroupEntry[] {
  const entries: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const f = line.split(':');
    if (f.length < 4) continue;
    const gid = parseId(f[2]);
    if (gid === undefined) continue;
    entries.push({
      name: f[0],
      gid,
      members: f[3]
        .split(',')
        .map((m) => m.trim())
        .filter(Boolean),
    });
  }
  return entries;
}

/** Resolves `spec` against parsed passwd and group entries. */
export function resolveUserIn(spec: string, passwd: PasswdEntry[], groups: GroupEntry[]): ResolvedUser {
  const [userPart, groupPart, ...extra] = spec.split(':');
  if (extra.length > 0) throw new ConveyorError('ERR_USER_NOT_FOUND', `invalid user ${JSON.stringify(spec)}`, { hint: 'use name, uid, name:group or uid:gid' });
  const wanted = userPart === '' ? '0' : userPart;
  const uidNumber = parseId(wanted);
  const entry = uidNumber !== undefined ? passwd.find((p) => p.uid === uidNumber) : passwd.find((p) => p.name === wanted);
  if (!entry && uidNumber === undefined) {
    throw new ConveyorError('ERR_USER_NOT_FOUND', `unable to find user ${wanted}: no matching entries in passwd file`, {
      hint: 'use a numeric uid or a user the image defines',
    });
  }
  const user: ResolvedUser = {
    uid: uidNumber ?? entry!.uid,
    gid: entry?.gid ?? 0,
    additionalGids: [],
    home: entry?.home || '/',
    name: entry?.name,
  };
  if (groupPart !== undefined && groupPart !== '') {
    const gidNumber = parseId(groupPart);
    if (gidNumber !== undefined) user.gid = gidNumber;
    else {
      const group = groups.find((g) => g.name === groupPart);
      if (!group) throw new ConveyorError('ERR_USER_NOT_FOUND', `unable to find group ${groupPart}: no matching entries in group file`);
      user.gid = group.gid;
    }
  }
  if (entry) {
    const gids = groups.filter((g) => g.members.includes(entry.name)).map((g) => g.gid);
    user.additionalGids = [...new Set(gids)].filter((g) => g !== user.gid);
  }
  return user;
}

/** Reads the image's /etc/passwd and /etc/group (safely, inside rootfs) and resolves `spec`. */
export async function resolveUser(rootfs: Root, spec: string): Promise<ResolvedUser> {
  const [passwd, group] = await Promise.all([readRootFile(rootfs, '/etc/passwd'), readRootFile(rootfs, '/etc/group')]);
  return resolveUserIn(spec, parsePasswd(passwd ?? ''), parseGroup(group ?? ''));
}
