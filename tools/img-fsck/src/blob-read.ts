/**
 * Reading blobs of a store that may be damaged or planted: never following a
 * symlink (O_NOFOLLOW), never reading what is not a regular file, small blobs
 * (manifests, configs) read whole under a cap, large ones hashed as a stream
 * in fixed-size pieces (memory stays flat whatever the size).
 *
 * Failure: none thrown for what the blob is (missing, not a file, too large,
 * another digest): those are answers. Other I/O errors (EIO, EACCES) propagate.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { MAX_MANIFEST_BYTES } from '@conveyor/lib-common/gc';

/** The largest manifest or config read: gc.ts's cap, so a check and a collection read the same blobs. */
export const MAX_JSON_BLOB_BYTES = MAX_MANIFEST_BYTES;
const CHUNK_BYTES = 1024 * 1024;

export type BlobState =
  | { kind: 'missing' }
  | { kind: 'not-file'; what: string }
  | { kind: 'too-large'; size: number }
  | { kind: 'corrupt'; size: number; actual: string }
  | { kind: 'ok'; size: number; data?: Buffer };

function fileKind(mode: number): string {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFDIR:
      return 'a directory';
    case constants.S_IFLNK:
      return 'a symlink';
    case constants.S_IFIFO:
      return 'a fifo';
    case constants.S_IFSOCK:
      return 'a socket';
    default:
      return 'a device or special file';
  }
}

/**
 * Opens `path` for reading when it is a regular file. A symlink makes open
 * fail with ELOOP (O_NOFOLLOW) and a fifo would block, so O_NONBLOCK too.
 */
async function openFile(path: string): Promise<{ handle: import('node:fs/promises').FileHandle; size: number } | Exclude<BlobState, { kind: 'ok' }>> {
  let handle: import('node:fs/promises').FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing' };
    if (code === 'ELOOP') return { kind: 'not-file', what: 'a symlink' };
    if (code === 'ENXIO' || code === 'EISDIR') return { kind: 'not-file', what: code === 'EISDIR' ? 'a directory' : 'a socket' };
    throw error;
  }
  const info = await handle.stat();
  if (!info.isFile()) {
    await handle.close();
    return { kind: 'not-file', what: fileKind(info.mode) };
  }
  return { handle, size: info.size };
}

/**
 * Hashes the blob at `path` and compares with `digest`. With `keep`, a blob no
 * larger than MAX_JSON_BLOB_BYTES comes back in `data` (a larger one is
 * `too-large` unread). `expectedSize`, when a descriptor gives one, is checked
 * before a byte is read: a blob of another size cannot be its digest.
 */
export async function checkBlob(
  path: string,
  digest: string,
  options: { keep?: boolean; expectedSize?: number; onBytes?: (bytes: number, size: number) => void } = {},
): Promise<BlobState> {
  const opened = await openFile(path);
  if (!('handle' in opened)) return opened;
  const { handle, size } = opened;
  try {
    if (options.keep && size > MAX_JSON_BLOB_BYTES) return { kind: 'too-large', size };
    if (options.expectedSize !== undefined && size !== options.expectedSize) {
      return { kind: 'corrupt', size, actual: `${size} bytes where its descriptor says ${options.expectedSize}` };
    }
    const hash = createHash('sha256');
    const kept: Buffer[] = [];
    let keptBytes = 0;
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, null);
      if (bytesRead === 0) break;
      const piece = buffer.subarray(0, bytesRead);
      hash.update(piece);
      if (options.keep) {
        kept.push(Buffer.from(piece));
        keptBytes += bytesRead;
      }
      options.onBytes?.(bytesRead, size);
      // A file growing under us (appended while hashed) must not make the read endless.
      if (keptBytes > MAX_JSON_BLOB_BYTES) return { kind: 'too-large', size };
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== digest) return { kind: 'corrupt', size, actual: `its content hashes to ${actual}` };
    return { kind: 'ok', size, data: options.keep ? Buffer.concat(kept) : undefined };
  } finally {
    await handle.close();
  }
}
