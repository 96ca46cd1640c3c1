/**
 * A detached container's output log, `containers/<id>/ctr.log`, in Docker's
 * json-file format: one JSON object per line,
 * `{"log":"text\n","stream":"stdout"|"stderr","time":"<RFC3339Nano>"}`.
 * A line longer than PARTIAL_LINE_BYTES is written in pieces without the
 * final newline (as Docker does), and so is the last unterminated piece when
 * the container ends. The file is size-capped with rotation: when the next
 * entry would pass maxSize, ctr.log becomes ctr.log.1 (ctr.log.1 becomes
 * ctr.log.2, ...), keeping maxFiles files in all.
 *
 * LogWriter is the supervisor's side (synchronous writes: one writer, and
 * order across stdout and stderr is kept); readLogEntries and followLog are
 * ctr-logs' side.
 *
 * Failure: LogWriter throws the file system's error (the supervisor then
 * stops logging but keeps supervising); readers skip a line that is not an
 * entry (a write cut short by a crash) and treat missing files as empty.
 */
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOG_FILE } from './state.js';

export { LOG_FILE };

/** Docker's 16 KiB: a longer line is flushed in pieces, so one runaway line cannot hold memory. */
export const PARTIAL_LINE_BYTES = 16 * 1024;
/** Default caps: 10 MiB per file, 3 files (ctr.log, ctr.log.1, ctr.log.2). */
export const DEFAULT_LOG_MAX_SIZE = 10 * 1024 * 1024;
export const DEFAULT_LOG_MAX_FILES = 3;

export type LogStream = 'stdout' | 'stderr';

/** One line of ctr.log. `log` keeps its newline; without one it is a piece of a longer line. */
export interface LogEntry {
  log: string;
  stream: LogStream;
  /** RFC 3339 with fractional seconds, UTC. */
  time: string;
}

export interface LogLimits {
  /** Bytes per file before rotation. */
  maxSize: number;
  /** Files kept, the current one included (1: no rotated files; the log is truncated instead). */
  maxFiles: number;
}

/** Paths of the log files of `path`, oldest first: ctr.log.N ... ctr.log.1, ctr.log. */
export function logFiles(path: string, maxFiles = 100): string[] {
  const rotated: string[] = [];
  for (let n = 1; n < maxFiles; n++) {
    try {
      statSync(`${path}.${n}`);
    } catch {
      break;
    }
    rotated.unshift(`${path}.${n}`);
  }
  return [...rotated, path];
}

/** Now in RFC 3339 (millisecond precision, which RFC3339Nano readers accept). */
function timestamp(): string {
  return new Date().toISOString();
}

/** Where `bytes` may be cut without splitting a UTF-8 character: its length, or the start of an unfinished last character. */
export function utf8Boundary(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const byte = bytes[bytes.length - back];
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? bytes.length - back : bytes.length;
  }
  return bytes.length;
}

/** Writes a container's output into its log, rotating by size. */
export class LogWriter {
  private fd: number;
  private size: number;
  private readonly pending: Record<LogStream, Buffer[]> = { stdout: [], stderr: [] };
  private readonly pendingBytes: Record<LogStream, number> = { stdout: 0, stderr: 0 };

  constructor(
    private readonly path: string,
    private readonly limits: LogLimits = { maxSize: DEFAULT_LOG_MAX_SIZE, maxFiles: DEFAULT_LOG_MAX_FILES },
    private readonly now: () => string = timestamp,
  ) {
    this.fd = openSync(path, 'a', 0o600);
    this.size = fstatSync(this.fd).size;
  }

  /** Takes a chunk of `stream`'s output: complete lines are written, the rest waits for its newline (or the size cap). */
  write(stream: LogStream, chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const end = newline < 0 ? chunk.length : newline + 1;
      let piece = chunk.subarray(start, end);
      while (piece.length > 0) {
        const part = piece.subarray(0, PARTIAL_LINE_BYTES - this.pendingBytes[stream]);
        this.pending[stream].push(part);
        this.pendingBytes[stream] += part.length;
        piece = piece.subarray(part.length);
        if (this.pendingBytes[stream] >= PARTIAL_LINE_BYTES) this.flush(stream, true);
      }
      if (newline >= 0) this.flush(stream);
      start = end;
    }
  }

  /**
   * Writes what waits of `stream` as one entry. A piece cut at the size cap
   * ends on a character boundary: the bytes of a character it would split
   * wait for the next piece, so every entry is valid UTF-8.
   */
  private flush(stream: LogStream, piece = false): void {
    let bytes = Buffer.concat(this.pending[stream]);
    this.pending[stream] = [];
    this.pendingBytes[stream] = 0;
    if (piece) {
      const cut = utf8Boundary(bytes);
      if (cut > 0 && cut < bytes.length) {
        this.pending[stream] = [bytes.subarray(cut)];
        this.pendingBytes[stream] = bytes.length - cut;
        bytes = bytes.subarray(0, cut);
      }
    }
    if (bytes.length === 0) return;
    const entry: LogEntry = { log: bytes.toString('utf8'), stream, time: this.now() };
    const line = Buffer.from(`${JSON.stringify(entry)}\n`);
    if (this.size > 0 && this.size + line.length > this.limits.maxSize) this.rotate();
    writeSync(this.fd, line);
    this.size += line.length;
  }

  /** ctr.log → ctr.log.1 → ... → ctr.log.<maxFiles-1>; the oldest is dropped. */
  private rotate(): void {
    closeSync(this.fd);
    const keep = this.limits.maxFiles - 1;
    rmSync(keep > 0 ? `${this.path}.${keep}` : this.path, { force: true });
    for (let n = keep - 1; n >= 1; n--) {
      try {
        renameSync(`${this.path}.${n}`, `${this.path}.${n + 1}`);
      } catch {
        // not there yet
      }
    }
    if (keep > 0) renameSync(this.path, `${this.path}.1`);
    this.fd = openSync(this.path, 'a', 0o600);
    this.size = 0;
  }

  /** Writes the unterminated rest of both streams and closes the file. */
  close(): void {
    this.flush('stdout');
    this.flush('stderr');
    closeSync(this.fd);
  }
}

/** Parses one line of a log file; undefined for anything that is not an entry. */
export function parseLogLine(line: string): LogEntry | undefined {
  if (line === '') return undefined;
  try {
    const entry = JSON.parse(line) as LogEntry;
    if (typeof entry?.log !== 'string' || (entry.stream !== 'stdout' && entry.stream !== 'stderr') || typeof entry.time !== 'string') return undefined;
    return entry;
  } catch {
    return undefined;
  }
}

/** Reads from `fd` at `offset` to its end: the complete lines, and the offset after the last one. */
function readLinesFrom(fd: number, offset: number): { lines: string[]; offset: number } {
  const chunks: Buffer[] = [];
  const buffer = Buffer.alloc(64 * 1024);
  let position = offset;
  for (;;) {
    const n = readSync(fd, buffer, 0, buffer.length, position);
    if (n === 0) break;
    chunks.push(Buffer.from(buffer.subarray(0, n)));
    position += n;
  }
  const data = Buffer.concat(chunks);
  const end = data.lastIndexOf(0x0a) + 1;
  const lines = data.subarray(0, end).toString('utf8').split('\n');
  lines.pop();
  return { lines, offset: offset + end };
}

function openIfExists(path: string): number | undefined {
  try {
    return openSync(path, 'r');
  } catch {
    return undefined;
  }
}

/** A place in the current log file: its open fd (none when there was no file) and the offset after the last complete line read. */
export interface LogCursor {
  fd: number | undefined;
  offset: number;
}

function entriesOf(lines: string[]): LogEntry[] {
  const entries: LogEntry[] = [];
  for (const line of lines) {
    const entry = parseLogLine(line);
    if (entry) entries.push(entry);
  }
  return entries;
}

/**
 * Every entry of the log at `path` (rotated files first), oldest first, and
 * a cursor at the end of what was read, for followLog to go on from without
 * a gap or a repeat. The caller passes the cursor on or closes its fd.
 */
export function readLogHistory(path: string): { entries: LogEntry[]; cursor: LogCursor } {
  const entries: LogEntry[] = [];
  const files = logFiles(path);
  for (const file of files.slice(0, -1)) {
    const fd = openIfExists(file);
    if (fd === undefined) continue;
    try {
      entries.push(...entriesOf(readLinesFrom(fd, 0).lines));
    } finally {
      closeSync(fd);
    }
  }
  const fd = openIfExists(path);
  if (fd === undefined) return { entries, cursor: { fd, offset: 0 } };
  const read = readLinesFrom(fd, 0);
  entries.push(...entriesOf(read.lines));
  return { entries, cursor: { fd, offset: read.offset } };
}

/** Every entry of the log at `path` (rotated files first), oldest first. */
export function readLogEntries(path: string): LogEntry[] {
  const { entries, cursor } = readLogHistory(path);
  if (cursor.fd !== undefined) closeSync(cursor.fd);
  return entries;
}

export interface FollowOptions {
  /** Whether the writer may still write (the container runs); asked after each drain that found nothing new. */
  active: () => boolean | Promise<boolean>;
  /** Between looks, in ms (default 100). */
  intervalMs?: number;
  /** Stops following (ctr-logs interrupted, or its reader gone). */
  signal?: AbortSignal;
}

/**
 * Yields the entries written to ctr.log from its current end (or `from`,
 * whose fd it then owns) on, across
 * rotations (the open file is read to its end before the new ctr.log is
 * taken), until `active()` says the writer is done and the log is drained.
 * Entries of a file rotated twice between two looks are missed.
 */
export async function* followLog(path: string, options: FollowOptions, from?: LogCursor): AsyncGenerator<LogEntry> {
  let fd = from ? from.fd : openIfExists(path);
  let offset = from ? from.offset : fd === undefined ? 0 : fstatSync(fd).size;
  try {
    for (;;) {
      if (options.signal?.aborted) return;
      let found = false;
      if (fd !== undefined) {
        const read = readLinesFrom(fd, offset);
        offset = read.offset;
        for (const line of read.lines) {
          const entry = parseLogLine(line);
          if (entry) yield entry;
          found = true;
        }
      }
      // Rotated (ctr.log is another file now), or created: go on with the new one from its start.
      const current = (() => {
        try {
          return statSync(path).ino;
        } catch {
          return undefined;
        }
      })();
      if (current !== undefined && (fd === undefined || fstatSync(fd).ino !== current)) {
        if (fd !== undefined) closeSync(fd);
        fd = openIfExists(path);
        offset = 0;
        continue;
      }
      if (found) continue;
      if (!(await options.active())) {
        // One last look: the writer may have written between the read and the question.
        if (fd !== undefined) {
          for (const line of readLinesFrom(fd, offset).lines) {
            const entry = parseLogLine(line);
            if (entry) yield entry;
          }
        }
        return;
      }
      await sleep(options.intervalMs ?? 100, undefined, { signal: options.signal }).catch(() => undefined);
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
