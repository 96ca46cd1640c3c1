/**
 * The file operations the Applier queues, executed with synchronous system
 * calls: by the writer thread (writer-worker.ts) or inline. Every create uses
 * O_EXCL|O_NOFOLLOW (or mkdir/symlink, which never follow the final
 * component); metadata goes through the new descriptor or an l* call.
 * Paths and symlink targets arrive as byte strings (latin1, one char per
 * byte: strings are cheap to post to a thread) and reach the kernel as
 * Buffers, byte for byte.
 */
import { closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, lutimesSync, mkdirSync, openSync, symlinkSync, writeSync } from 'node:fs';
import type { WriterOp } from './writer.js';

/** A byte string as the Buffer the file system takes. */
const bytes = (s: string): Buffer => Buffer.from(s, 'latin1');

/**
 * A time in seconds as Node's utimes family takes it: Node replaces a
 * negative number with the current time, but takes a numeric string as is,
 * so pre-1970 times are passed as strings.
 */
export function fsTime(seconds: number): number | string {
  return seconds < 0 ? String(seconds) : seconds;
}

const OPEN_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const fds = new Map<number, number>();

function writeAll(fd: number, data: Uint8Array): void {
  let offset = 0;
  while (offset < data.length) offset += writeSync(fd, data, offset, data.length - offset);
}

function finish(fd: number, op: { uid: number; gid: number; mode: number; atime: number; mtime: number; chown: boolean }): void {
  try {
    if (op.chown) fchownSync(fd, op.uid, op.gid);
    fchmodSync(fd, op.mode);
    futimesSync(fd, fsTime(op.atime), fsTime(op.mtime));
  } finally {
    closeSync(fd);
  }
}

/** The bytes an operation writes: its own buffer, or its slice of the shared ring. */
function dataOf(op: { data?: Uint8Array; ring?: [number, number, number] }, ring: Uint8Array | undefined): Uint8Array | undefined {
  if (op.data) return op.data;
  if (op.ring && ring) return ring.subarray(op.ring[0], op.ring[0] + op.ring[1]);
  return undefined;
}

export function runOp(op: WriterOp, ring?: Uint8Array): void {
  switch (op.op) {
    case 'mkdir':
      mkdirSync(bytes(op.path), 0o755);
      return;
    case 'file': {
      const fd = openSync(bytes(op.path), OPEN_FLAGS, 0o600);
      try {
        const data = dataOf(op, ring);
        if (data) writeAll(fd, data);
      } catch (error) {
        closeSync(fd);
        throw error;
      }
      finish(fd, op);
      return;
    }
    case 'open':
      fds.set(op.id, openSync(bytes(op.path), OPEN_FLAGS, 0o600));
      return;
    case 'write':
      {
        const data = dataOf(op, ring);
        if (data) writeAll(fds.get(op.id)!, data);
      }
      return;
    case 'close': {
      const fd = fds.get(op.id)!;
      fds.delete(op.id);
      finish(fd, op);
      return;
    }
    case 'symlink': {
      const path = bytes(op.path);
      symlinkSync(bytes(op.target), path);
      if (op.chown) lchownSync(path, op.uid, op.gid);
      lutimesSync(path, fsTime(op.atime), fsTime(op.mtime));
      return;
    }
  }
}

/** Closes descriptors left open by a failed sequence. */
export function closeAll(): void {
  for (const fd of fds.values()) {
    try {
      closeSync(fd);
    } catch {
      // ignore
    }
  }
  fds.clear();
}
