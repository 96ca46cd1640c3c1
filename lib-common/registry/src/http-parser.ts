/**
 * An HTTP/1.1 response parser for the raw-socket path (raw-exchange.ts).
 * `HeadParser` is fed a connection's bytes as they arrive and finds the
 * response head (status line and headers, capped at MAX_HEAD_BYTES, interim
 * 1xx answers skipped); `BodyDecoder` then frames the body by Content-Length,
 * chunked transfer coding or the connection's end, handing body bytes on as
 * views of the caller's buffer (never copied). Bytes after a complete body
 * are not handed on (we never pipeline); `overrun` tells they came, and the
 * connection is then not used again (raw-exchange.ts's keep-alive).
 *
 * Hostile input fails with ERR_REGISTRY_PROTOCOL saying what was wrong (a bad
 * status line or header line, an oversized head, a negative, non-numeric or
 * conflicting length, both Content-Length and Transfer-Encoding, a bad chunk
 * size); nothing here waits for bytes a well-formed response would not send.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { ConveyorError } from '@conveyor/lib-common/errors';

/** The largest response head accepted (Node's http accepts 16 KiB; some CDNs send long ones). */
export const MAX_HEAD_BYTES = 64 * 1024;
/** A chunk-size line (with extensions) or a trailer line longer than this is refused. */
const MAX_LINE_BYTES = 4096;
/** All trailer lines together. */
const MAX_TRAILER_BYTES = 16 * 1024;
/** 2^48 bytes per chunk at most: far beyond any blob, well inside a double's exact integers. */
const MAX_CHUNK_HEX_DIGITS = 12;

export interface ResponseHead {
  /** The status line's version: `1.1`, or `1.0` (whose connections close after one exchange). */
  httpVersion: '1.0' | '1.1';
  statusCode: number;
  statusMessage: string;
  headers: IncomingHttpHeaders;
}

export type Framing = { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: ([^\r\n]*))?$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters in header values is the point
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

function protocolError(message: string): ConveyorError {
  return new ConveyorError('ERR_REGISTRY_PROTOCOL', `malformed HTTP response: ${message}`, {
    hint: 'the registry (or a proxy in between) answered with something that is not HTTP/1.1',
  });
}

/** Parses one head's text (without its final empty line). Throws ERR_REGISTRY_PROTOCOL. */
export function parseHead(text: string): ResponseHead {
  const lines = text.split('\r\n');
  const status = STATUS_LINE.exec(lines[0]);
  if (!status) throw protocolError(`bad status line ${JSON.stringify(lines[0].slice(0, 80))}`);
  const headers: IncomingHttpHeaders = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith(' ') || line.startsWith('\t')) throw protocolError('folded header line');
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name)) throw protocolError(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    const value = line.slice(colon + 1).trim();
    if (CONTROL.test(value)) throw protocolError(`control character in header ${name}`);
    const key = name.toLowerCase();
    const previous = headers[key];
    if (key === 'set-cookie') headers[key] = [...((previous as string[] | undefined) ?? []), value];
    else if (previous === undefined) headers[key] = value;
    else if (key === 'content-length') {
      if (previous !== value) throw protocolError(`conflicting Content-Length headers (${previous}, ${value})`);
    } else headers[key] = `${previous as string}, ${value}`;
  }
  return { httpVersion: status[1] === '1' ? '1.1' : '1.0', statusCode: Number(status[2]), statusMessage: status[3] ?? '', headers };
}

/**
 * How the body of a response to `method` is delimited; throws
 * ERR_REGISTRY_PROTOCOL for lengths that do not add up. A HEAD's answer has
 * no body whatever its Content-Length says (that is the GET's length), but
 * its framing headers are checked all the same: a smuggling-shaped answer is
 * refused whatever was asked.
 */
export function framingOf(head: ResponseHead, method: 'GET' | 'HEAD' = 'GET'): Framing {
  const { statusCode, headers } = head;
  if (statusCode < 200 || statusCode === 204 || statusCode === 304) return { kind: 'none' };
  if (method === 'HEAD') {
    framingOf(head, 'GET');
    return { kind: 'none' };
  }
  const te = headers['transfer-encoding'];
  const cl = headers['content-length'];
  if (te !== undefined) {
    // Both is how requests are smuggled past proxies: refused rather than guessed.
    if (cl !== undefined) throw protocolError('both Transfer-Encoding and Content-Length');
    const codings = String(te)
      .split(',')
      .map((c) => c.trim().toLowerCase())
      .filter((c) => c !== '');
    if (codings.length !== 1 || codings[0] !== 'chunked') throw protocolError(`unsupported Transfer-Encoding ${JSON.stringify(te)}`);
    return { kind: 'chunked' };
  }
  if (cl !== undefined) {
    // "42, 42" (a list of one repeated value) is allowed by RFC 9110; anything else is not.
    const values = new Set(
      String(cl)
        .split(',')
        .map((v) => v.trim()),
    );
    const [value] = values;
    if (values.size !== 1 || !/^\d{1,16}$/.test(value) || Number(value) > Number.MAX_SAFE_INTEGER) {
      throw protocolError(`bad Content-Length ${JSON.stringify(String(cl).slice(0, 40))}`);
    }
    return { kind: 'length', length: Number(value) };
  }
  return { kind: 'close' };
}

/**
 * Finds the response head in a connection's first bytes. `push` returns the
 * final (non-1xx) head and the bytes after it (a view of `data`), or
 * undefined while the head is incomplete.
 */
export class HeadParser {
  private pending: Buffer = Buffer.alloc(0);

  push(data: Buffer): { head: ResponseHead; rest: Buffer } | undefined {
    let bytes = this.pending.length === 0 ? data : Buffer.concat([this.pending, data]);
    for (;;) {
      // The terminator may straddle reads: search from just before the new bytes.
      const end = bytes.indexOf('\r\n\r\n', Math.max(0, this.pending.length - 3), 'latin1');
      if (end < 0 || end + 4 > MAX_HEAD_BYTES) {
        if (bytes.length > MAX_HEAD_BYTES || end >= 0) throw protocolError(`response head larger than ${MAX_HEAD_BYTES} bytes`);
        this.pending = Buffer.from(bytes);
        return undefined;
      }
      const head = parseHead(bytes.toString('latin1', 0, end));
      const rest = bytes.subarray(end + 4);
      if (head.statusCode === 101) throw protocolError('101 Switching Protocols to a request that asked for no upgrade');
      if (head.statusCode >= 200) {
        this.pending = Buffer.alloc(0);
        return { head, rest };
      }
      // An interim answer (100 Continue, 103 Early Hints): the real one follows.
      this.pending = Buffer.alloc(0);
      bytes = rest;
    }
  }

  /** Bytes held of an incomplete head (0 when none arrived). */
  get buffered(): number {
    return this.pending.length;
  }
}

/** Where a chunked body is: a size line, chunk data, the CRLF after it, trailer lines, or done. */
type ChunkState = 'size' | 'data' | 'data-end' | 'trailer' | 'done';

/**
 * Delimits one body. `push` hands the body bytes in `data` to `emit` (views,
 * valid during the call) and returns true once the body is complete; `end`
 * says whether the body is complete when the connection ends there.
 */
export class BodyDecoder {
  /** Body bytes handed on so far. */
  received = 0;
  /** Bytes came after the body's end (not handed on): the connection carries something we did not ask for. */
  overrun = false;
  private remaining: number;
  private state: ChunkState = 'size';
  private line = '';
  private trailerBytes = 0;
  private complete: boolean;

  constructor(private readonly framing: Framing) {
    this.remaining = framing.kind === 'length' ? framing.length : 0;
    this.complete = framing.kind === 'none' || (framing.kind === 'length' && framing.length === 0);
  }

  get done(): boolean {
    return this.complete;
  }

  /** The declared length, when there is one. */
  get length(): number | undefined {
    return this.framing.kind === 'length' ? this.framing.length : undefined;
  }

  push(data: Buffer, emit: (view: Buffer) => void): boolean {
    if (data.length === 0) return this.complete;
    if (this.complete) {
      this.overrun = true;
      return true;
    }
    if (this.framing.kind === 'close') {
      this.received += data.length;
      emit(data);
      return false;
    }
    if (this.framing.kind === 'length') {
      const take = Math.min(this.remaining, data.length);
      this.remaining -= take;
      this.received += take;
      emit(take === data.length ? data : data.subarray(0, take));
      this.complete = this.remaining === 0;
      if (take < data.length) this.overrun = true;
      return this.complete;
    }
    return this.pushChunked(data, emit);
  }

  /** True when the body is complete at the connection's end (a close-delimited body ends there). */
  end(): boolean {
    if (this.framing.kind === 'close') this.complete = true;
    return this.complete;
  }

  private pushChunked(data: Buffer, emit: (view: Buffer) => void): boolean {
    let i = 0;
    while (i < data.length && this.state !== 'done') {
      if (this.state === 'data') {
        const take = Math.min(this.remaining, data.length - i);
        emit(data.subarray(i, i + take));
        this.received += take;
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.state = 'data-end';
        continue;
      }
      // Size, DataEnd and Trailer read lines: a few bytes, one at a time.
      const newline = data.indexOf(0x0a, i);
      const stop = newline < 0 ? data.length : newline;
      this.line += data.toString('latin1', i, stop);
      i = stop;
      if (this.line.length > MAX_LINE_BYTES) throw protocolError('chunk line too long');
      if (newline < 0) break;
      i++;
      const line = this.line.endsWith('\r') ? this.line.slice(0, -1) : this.line;
      this.line = '';
      this.lineDone(line);
    }
    this.complete = this.state === 'done';
    if (this.complete && i < data.length) this.overrun = true;
    return this.complete;
  }

  private lineDone(line: string): void {
    if (this.state === 'data-end') {
      if (line !== '') throw protocolError('chunk longer than its size');
      this.state = 'size';
      return;
    }
    if (this.state === 'trailer') {
      this.trailerBytes += line.length + 2;
      if (this.trailerBytes > MAX_TRAILER_BYTES) throw protocolError('trailers too long');
      if (line === '') this.state = 'done';
      return;
    }
    const size = line.split(';')[0].trim();
    if (!/^[0-9a-fA-F]+$/.test(size) || size.length > MAX_CHUNK_HEX_DIGITS) throw protocolError(`bad chunk size ${JSON.stringify(size.slice(0, 20))}`);
    this.remaining = Number.parseInt(size, 16);
    this.state = this.remaining === 0 ? 'trailer' : 'data';
  }
}
