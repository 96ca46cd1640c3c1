/**
 * The xattr policy: which of an entry's xattrs we restore, and how many
 * bytes of them a layer may hold. Restored: `user.*` (but `user.overlay.*`),
 * `security.capability` and POSIX ACLs; dropped, with a warning: `trusted.*`,
 * other `security.*`, unknown namespaces, and `user.overlay.*` (overlayfs's
 * own metadata in rootless mode: opaque, whiteout, redirect, origin, which
 * only we may write). Pure: it decides and throws, the applier keeps the
 * result and deferred.ts sets it.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { show } from '../names.js';

/** Linux caps one xattr value at 64 KiB; more per entry is an attack on our memory, not data. */
const MAX_XATTR_BYTES_PER_ENTRY = 64 * 1024;
/** xattrs are kept until the layer's batch is applied: a cap on what one layer may hold. */
export const MAX_XATTR_BYTES_PER_LAYER = 16 * 1024 * 1024;

function xattrAllowed(name: string): boolean {
  if (name.startsWith('user.overlay.')) return false;
  return name.startsWith('user.') || name === 'security.capability' || isAcl(name);
}

/** POSIX ACLs rewrite a directory's group bits and grant others access: a mode change by another name. */
function isAcl(name: string): boolean {
  return name === 'system.posix_acl_access' || name === 'system.posix_acl_default';
}

/** The xattr that marks a directory opaque for overlayfs (`user.` when rootless: trusted.* needs root). */
export function opaqueXattr(rootless: boolean): string {
  return rootless ? 'user.overlay.opaque' : 'trusted.overlay.opaque';
}

/**
 * The xattrs of entry `name` that we restore, and their size in bytes.
 * `isRoot`: the layer's own root entry, whose ACLs are not the layer's to
 * set. `warnOnce(key, message)` reports what is dropped. Throws
 * ERR_LAYER_TOO_LARGE past the per-entry cap.
 */
export function restoredXattrs(
  name: string,
  xattrs: Map<string, string>,
  isRoot: boolean,
  warnOnce: (key: string, message: string) => void,
): { attrs: Map<string, string> | undefined; size: number } {
  let found: Map<string, string> | undefined;
  let size = 0;
  for (const [attr, value] of xattrs) {
    if (!xattrAllowed(attr)) {
      warnOnce(
        `xattr:${attr}`,
        `dropping xattr ${show(attr)} (on ${show(name)} and maybe others): only user.* (but user.overlay.*), security.capability and POSIX ACLs are restored`,
      );
      continue;
    }
    if (isRoot && isAcl(attr)) {
      warnOnce(`root-acl`, `dropping the ACL ${show(attr)} of the layer's root entry: the root's permissions are not the layer's to set`);
      continue;
    }
    size += attr.length + value.length;
    (found ??= new Map()).set(attr, value);
  }
  if (size > MAX_XATTR_BYTES_PER_ENTRY) {
    throw new ConveyorError('ERR_LAYER_TOO_LARGE', `${show(name)} carries ${size} bytes of xattrs (limit ${MAX_XATTR_BYTES_PER_ENTRY})`);
  }
  return { attrs: found, size };
}
