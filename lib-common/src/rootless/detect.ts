/**
 * Am I rootless? True when the effective uid is not 0, or when the process is
 * in a user namespace other than the initial one (its /proc/self/uid_map is
 * not the identity map `0 0 4294967295`): inside the keeper (rootless/keeper)
 * the uid is 0, but mounts need `userxattr`, chown to unmapped ids fails with
 * EINVAL, runc needs a writable --root and cgroups are not ours. Code decides
 * by this, never by `uid === 0` alone.
 *
 * The facts come from /proc/self (status and uid_map). Never throws: without
 * /proc the process counts as root in the initial namespace (not rootless).
 */
import { readFileSync } from 'node:fs';

/** The identity facts isRootless decides by. */
export interface Identity {
  /** Effective uid (Uid: field 2 of /proc/self/status). */
  euid: number;
  /** /proc/self/uid_map as read ('' when unreadable). */
  uidMap: string;
}

/** Whether a uid_map text is the initial namespace's identity map (or unreadable: no user namespaces at all). */
export function isInitialUidMap(uidMap: string): boolean {
  const lines = uidMap.trim().split('\n').filter(Boolean);
  if (lines.length === 0) return true;
  return lines.length === 1 && lines[0].trim().split(/\s+/).join(' ') === '0 0 4294967295';
}

/** The pure decision: not root, or root of a user namespace we were mapped into. */
export function rootlessFor(identity: Identity): boolean {
  return identity.euid !== 0 || !isInitialUidMap(identity.uidMap);
}

function readOr(path: string, fallback: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return fallback;
  }
}

/** This process's identity, from /proc/self. */
export function readIdentity(): Identity {
  const uidLine = /^Uid:\s+\d+\s+(\d+)/m.exec(readOr('/proc/self/status', ''));
  return { euid: uidLine ? Number(uidLine[1]) : 0, uidMap: readOr('/proc/self/uid_map', '') };
}

let cached: boolean | undefined;

/** Whether this process runs rootless (see the header). */
export function isRootless(): boolean {
  cached ??= rootlessFor(readIdentity());
  return cached;
}

/** Whether this process is in a user namespace other than the initial one (its uid_map alone: every store check asks). */
export function inUserNamespace(): boolean {
  return !isInitialUidMap(readOr('/proc/self/uid_map', ''));
}

/** The uid an id unmapped in our user namespace reads as (/proc/sys/kernel/overflowuid, default 65534). */
export function overflowUid(): number {
  const value = Number.parseInt(readOr('/proc/sys/kernel/overflowuid', '65534'), 10);
  return Number.isInteger(value) ? value : 65534;
}
