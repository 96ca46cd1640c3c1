/**
 * The tree checksum of an unpacked layer (layers/<chain hex>/diff): one sha256
 * over the metadata of every entry, recorded in meta.json by layer-unpack when
 * it commits a layer and recomputed by img-fsck, so a file changed, added,
 * removed, chmod'ed or chown'ed after the unpack is seen.
 *
 * Hashed per entry, in a fixed order (depth first, names compared as bytes):
 * the path relative to the root (as bytes: names need not be UTF-8), its type,
 * permission bits (setuid/setgid/sticky included), uid and gid as on disk,
 * and by type: a regular file's size and mtime (ns), a symlink's target, a
 * device's number. Directory mtimes and sizes are left out (they depend on
 * the filesystem and on the order entries were made), and so are atime and
 * ctime (a copy of the store changes them) and xattrs. File contents are not
 * hashed (that would be a second read of every byte at unpack time): an edit
 * shows in the size or the mtime, one that keeps both does not.
 *
 * The walk never follows a symlink (lstat, readlink). It is synchronous per
 * directory and yields to the event loop every few hundred entries, so a layer
 * being walked does not starve a concurrent unpack's workers.
 *
 * Failure: the filesystem's error when the root cannot be read (ENOENT when it
 * is gone); an entry that vanishes during the walk is an error too (the tree
 * is not the one it was).
 */
import { createHash, type Hash } from 'node:crypto';
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { SHA256_DIGEST } from './digest.js';

/** The algorithm's version: a change to what is hashed makes a new one, and old records are compared only with their own. */
export const TREE_DIGEST_VERSION = 1;

/** What meta.json records (`tree`). */
export interface TreeDigest {
  version: number;
  /** `sha256:<hex>` over the entries' metadata. */
  digest: string;
  /** Entries hashed, the root included. */
  entries: number;
}

/** How often the walk yields to the event loop, in entries. */
const YIELD_EVERY = 500;

function typeLetter(mode: bigint): string {
  switch (Number(mode & 0o170000n)) {
    case 0o100000:
      return 'f';
    case 0o040000:
      return 'd';
    case 0o120000:
      return 'l';
    case 0o020000:
      return 'c';
    case 0o060000:
      return 'b';
    case 0o010000:
      return 'p';
    case 0o140000:
      return 's';
    default:
      return '?';
  }
}

/** Hashes one entry; resolves whether it is a directory to descend into. */
function hashEntry(hash: Hash, absolute: Buffer, relative: Buffer): boolean {
  const info = lstatSync(absolute, { bigint: true });
  const type = typeLetter(info.mode);
  const target = type === 'l' ? readlinkSync(absolute, { encoding: 'buffer' }) : Buffer.alloc(0);
  const size = type === 'f' ? info.size : 0n;
  const mtime = type === 'f' ? info.mtimeNs : 0n;
  const rdev = type === 'c' || type === 'b' ? info.rdev : 0n;
  // Lengths first, then the byte strings: no path or target can be read as another's.
  hash.update(`${relative.length} ${target.length} ${type} ${(info.mode & 0o7777n).toString(8)} ${info.uid} ${info.gid} ${size} ${mtime} ${rdev}\n`);
  hash.update(relative);
  hash.update(target);
  return type === 'd';
}

/** The tree checksum of the directory `root` (see the top of this file). */
export async function treeDigest(root: string): Promise<TreeDigest> {
  const hash = createHash('sha256');
  const slash = Buffer.from('/');
  let entries = 0;
  const walk = async (absolute: Buffer, relative: Buffer): Promise<void> => {
    const names = readdirSync(absolute, { encoding: 'buffer' }).sort(Buffer.compare);
    for (const name of names) {
      const childAbsolute = Buffer.concat([absolute, slash, name]);
      const childRelative = relative.length === 0 ? name : Buffer.concat([relative, slash, name]);
      entries++;
      if (entries % YIELD_EVERY === 0) await new Promise((resolve) => setImmediate(resolve));
      if (hashEntry(hash, childAbsolute, childRelative)) await walk(childAbsolute, childRelative);
    }
  };
  const rootPath = Buffer.from(root);
  entries++;
  if (!hashEntry(hash, rootPath, Buffer.alloc(0))) {
    const error = new Error(`${root} is not a directory`) as NodeJS.ErrnoException;
    error.code = 'ENOTDIR';
    throw error;
  }
  await walk(rootPath, Buffer.alloc(0));
  return { version: TREE_DIGEST_VERSION, digest: `sha256:${hash.digest('hex')}`, entries };
}

/** Whether `value` (a meta.json's `tree`, hostile) is a tree checksum of a version this code computes. */
export function isTreeDigest(value: unknown): value is TreeDigest {
  const tree = value as TreeDigest | null;
  return (
    typeof tree === 'object' &&
    tree !== null &&
    tree.version === TREE_DIGEST_VERSION &&
    typeof tree.digest === 'string' &&
    SHA256_DIGEST.test(tree.digest) &&
    Number.isSafeInteger(tree.entries)
  );
}
