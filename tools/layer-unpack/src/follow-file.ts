/**
 * A blob read while it is still being written (issue 17: unpack while the
 * layer downloads). img-fetch appends the body to `ingest/<hex>` and renames
 * the file into blobs/ once its digest verifies; this reads the same file from
 * the start as it grows, up to the blob's declared size.
 *
 * What is read here is not trusted for what it is: the layer's diff ID is
 * checked over the inflated bytes as for any blob (read-layer.ts), and the
 * caller commits nothing before img-fetch has verified the blob. Following
 * only has to end, and to end with an error whenever the file it holds may
 * not become the blob:
 *
 * - the path is not a regular file when opened (a FIFO, a device: opened
 *   O_NONBLOCK so neither blocks), or is a symlink (O_NOFOLLOW);
 * - the file shrinks below what was read (img-fetch started it over after a
 *   registry ignored its range);
 * - the path names another file while this one is at its end (img-fetch
 *   removed it after a failed verification and downloads again);
 * - it is at its end short of `size` after `commit()` (the blob is in place:
 *   no more bytes will come to this file);
 * - `destroy()`: the caller gave up on it (its input ended without the blob).
 *
 * The error of the first four has code ERR_FOLLOW_CHANGED: the caller then
 * unpacks from the committed blob instead. Until the file exists, and at its
 * end, it is polled (every POLL_MS at first, less often the longer it waits:
 * each poll is a round of thread wake-ups), and read on once 1 MiB (or the
 * rest of the blob) is there: a download outruns an unpack on a fast link,
 * so the reader is rarely there; on a slow one it takes the bytes in 1 MiB
 * steps, not in whatever trickled in since the last read.
 */
import { close, constants, fstat, open, read, stat } from 'node:fs';
import { Readable } from 'node:stream';

/** The first wait at the file's end; each further one doubles, up to MAX_POLL_MS, until it grows. */
export const POLL_MS = 4;
const MAX_POLL_MS = 32;
const CHUNK_BYTES = 256 * 1024;
/** At its end, the file is read on once this much more is there (or the rest of the blob). */
const STEP_BYTES = 1024 * 1024;

export type FollowedFile = Readable & {
  /** The blob is committed: whatever this file lacks now, it will never get. */
  commit(): void;
};

function changed(path: string, why: string): Error {
  return Object.assign(new Error(`${path}: ${why}`), { code: 'ERR_FOLLOW_CHANGED' });
}

/** Reads `path` from its start up to `size` bytes as another process appends to it; see above. */
export function followFile(path: string, size: number): FollowedFile {
  let fd: number | undefined;
  let ino = 0;
  let position = 0;
  let committed = false;
  let timer: NodeJS.Timeout | undefined;
  let busy = false;
  let wait = POLL_MS;

  const stream = new Readable({
    highWaterMark: CHUNK_BYTES,
    read() {
      if (!busy) step();
    },
    destroy(error, callback) {
      if (timer) clearTimeout(timer);
      timer = undefined;
      if (fd === undefined) return callback(error);
      close(fd, () => callback(error));
      fd = undefined;
    },
  }) as FollowedFile;
  stream.commit = () => {
    committed = true;
  };

  const later = () => {
    busy = true;
    timer = setTimeout(() => {
      timer = undefined;
      busy = false;
      if (!stream.destroyed) step();
    }, wait);
    // A poll is a round of thread wake-ups (context switches doubled at 100 Mbit/s): fewer on a slow link.
    wait = Math.min(wait * 2, MAX_POLL_MS);
  };
  const fail = (error: Error) => {
    busy = false;
    stream.destroy(error);
  };

  const openFile = () => {
    busy = true;
    open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK, (error, opened) => {
      if (stream.destroyed) {
        if (!error) close(opened, () => undefined);
        return;
      }
      if (error) {
        // Not there yet (img-fetch opens it once the registry answers); past the commit it never will be.
        if (error.code === 'ENOENT' && !committed) return later();
        return fail(error.code === 'ENOENT' || error.code === 'ELOOP' ? changed(path, error.message) : error);
      }
      fd = opened;
      fstat(opened, (statError, info) => {
        if (stream.destroyed) return;
        if (statError) return fail(statError);
        if (!info.isFile()) return fail(changed(path, 'not a regular file'));
        ino = info.ino;
        busy = false;
        step();
      });
    });
  };

  /** At the file's end short of `size`: wait for more, or fail when none can come. */
  const atEnd = () => {
    const wasCommitted = committed;
    fstat(fd!, (error, own) => {
      if (stream.destroyed) return;
      if (error) return fail(error);
      if (own.size < position) return fail(changed(path, `shrank to ${own.size} bytes after ${position} were read`));
      // Read on in steps while the download trickles in: fewer, larger reads for the same bytes.
      if (own.size >= Math.min(size, position + STEP_BYTES) || (wasCommitted && own.size > position)) {
        busy = false;
        return step();
      }
      if (own.size > position) return later();
      if (wasCommitted) return fail(changed(path, `ended at ${position} of ${size} bytes when the blob was committed`));
      stat(path, (pathError, named) => {
        if (stream.destroyed) return;
        // Gone: renamed into blobs/ (the commit is on its way) or removed (a retry will make it anew).
        if (pathError || named.ino === ino) return later();
        fail(changed(path, 'was replaced by another file'));
      });
    });
  };

  const step = () => {
    if (stream.destroyed) return;
    if (position >= size) {
      stream.push(null);
      return;
    }
    if (fd === undefined) return openFile();
    busy = true;
    const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, size - position));
    read(fd, buffer, 0, buffer.length, position, (error, n) => {
      if (stream.destroyed) return;
      if (error) return fail(error);
      if (n === 0) return atEnd();
      busy = false;
      wait = POLL_MS;
      position += n;
      if (stream.push(n === buffer.length ? buffer : buffer.subarray(0, n))) step();
    });
  };

  return stream;
}
