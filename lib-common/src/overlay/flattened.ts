/**
 * The store's register of flattened root filesystems.
 *
 * `layer-unpack --flatten DIR` puts a tree wherever its caller asks, and a
 * `rootfs` record then carries `dir`. A record is data anyone can write, so a
 * `dir` on stdin proves nothing: `{"type":"rootfs","dir":"/"}` piped into a
 * root ctr-spawn would show the host's / inside a container. The register
 * is what makes the caller's choice checkable: layer-unpack writes
 * `flattened/<sha256 of DIR>.json` (the path and the directory's device and
 * inode and birth time) into the closed store after it built DIR, and overlay-mount and
 * ctr-spawn accept a `dir` only when the store names that very directory.
 * Only the store's owner can write the register, so another user cannot
 * enrol /etc; the identity check refuses a directory put at a registered path
 * after the flattened one was removed.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex, sha256 } from '../digest.js';
import { mkdirClosed, readSmallRegularFile, type Store } from '../store.js';

interface Registration {
  dir: string;
  dev: string;
  ino: string;
  /** Birth time in ns (statx): inode numbers are reused at once when a directory is removed and another made. */
  birth: string;
}

/** A registration is a few hundred bytes; more is not one of ours. */
const MAX_REGISTRATION_BYTES = 64 * 1024;

function registrationPath(store: Store, dir: string): string {
  return join(store.root, 'flattened', `${digestHex(sha256(dir))}.json`);
}

/**
 * Records that `dir` (absolute, normalised, an existing directory) was
 * flattened for this store's owner. Fails with the filesystem's error; the
 * store is left with or without the registration, never a partial one.
 */
export async function registerFlattened(store: Store, dir: string): Promise<void> {
  const info = await stat(dir, { bigint: true });
  await store.tighten();
  await mkdirClosed(join(store.root, 'flattened'));
  const registration: Registration = { dir, dev: String(info.dev), ino: String(info.ino), birth: String(info.birthtimeNs) };
  await store.writeFileAtomic(registrationPath(store, dir), JSON.stringify(registration) + '\n');
}

/**
 * True when the store registered `dir` and the directory there now is the one
 * registered (same device, inode and birth time). A missing, unreadable or malformed
 * registration is false, never an error.
 */
export async function isRegisteredFlattened(store: Store, dir: string): Promise<boolean> {
  try {
    const text = await readSmallRegularFile(registrationPath(store, dir), MAX_REGISTRATION_BYTES);
    if (text === undefined) return false;
    const registration = JSON.parse(text) as Partial<Registration>;
    const now = await stat(dir, { bigint: true });
    return (
      registration.dir === dir && registration.dev === String(now.dev) && registration.ino === String(now.ino) && registration.birth === String(now.birthtimeNs)
    );
  } catch {
    return false;
  }
}
