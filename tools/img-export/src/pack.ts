/**
 * An archive tree packed with tar-fs, reproducibly: the given entries in
 * their order (no directory walked), owner 0:0, mtime 0, mode 0644 for files
 * and 0755 for directories. Written to a stream, to FILE (through FILE.tmp
 * renamed at the end, so a failure leaves nothing half-written at FILE), or,
 * for `oci-dir`, the tree itself renamed into place. A failure rejects and
 * removes the temporary file.
 */
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-fs';

const EPOCH = new Date(0);

interface Header {
  name: string;
  type?: string | null;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: Date;
}

/** The header fields a reproducible archive fixes. */
export function normaliseHeader<T extends Header>(header: T): T {
  return { ...header, uid: 0, gid: 0, uname: '', gname: '', mtime: EPOCH, mode: header.type === 'directory' ? 0o755 : 0o644 };
}

/** Packs `entries` of `dir` into `out` (not ended early: resolves when the whole tar is written). */
export async function packTree(dir: string, entries: string[], out: Writable): Promise<void> {
  // Explicit entries are packed whatever `ignore` says; it only stops the walk into listed directories.
  const packer = tar.pack(dir, { entries, ignore: () => true, map: normaliseHeader, dereference: true });
  await pipeline(packer, out);
}

/** Packs into FILE through FILE.tmp, renamed once complete. */
export async function packToFile(dir: string, entries: string[], file: string): Promise<void> {
  const temp = `${file}.tmp`;
  try {
    await packTree(dir, entries, createWriteStream(temp, { mode: 0o644 }));
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}
