/**
 * The raw-socket blob GET: one HTTP/1.1 exchange on a net or tls socket of
 * our own, read with `onread` into ONE reused buffer per connection, so a
 * large body costs no fresh memory per read (node:http hands each 64 KB read
 * over in a new Buffer: about 8,000 page faults for a 30 MB blob in a fresh
 * process). Transport.sendRaw sets it up with the same TLS rules as its
 * node:http requests; the client's auth, redirects and retries and blob.ts's
 * resume, size and digest checks sit above it unchanged.
 *
 * The response (`RawResponse`) is a Readable, so the client's code for
 * answers that are not a blob (401, redirects, errors) reads it like an
 * IncomingMessage; a blob body is read with `consume(sink)` instead, which
 * hands each piece to `sink` as a view of the reused buffer, valid only
 * during the call (blob.ts hashes and writes it there).
 *
 * On failure: the promise rejects (before the head) or the response is
 * destroyed (after it) with Node-style network errors blob.ts and retry.ts
 * already know: ECONNRESET for a connection that ends early (mid-head or
 * mid-body), ERR_CONVEYOR_TIMEOUT, ERR_CONVEYOR_SLOW, the socket's own errors
 * (certificate codes included), AbortError; a response that is not HTTP/1.1
 * is ERR_REGISTRY_PROTOCOL (http-parser.ts).
 */
import { connect as netConnect, type NetConnectOpts, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions, type SecureContext } from 'node:tls';
import type { IncomingHttpHeaders } from 'node:http';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { BodyDecoder, framingOf, HeadParser } from './http-parser.js';

/** Bytes per socket read: large reads mean few system calls and few, large file writes. */
export const READ_BUFFER_BYTES = 1024 * 1024;

export interface RawExchangeOptions {
  /** For https: URLs, what transport.ts decided for this host. */
  tls?: { rejectUnauthorized: boolean; secureContext?: SecureContext; servername?: string };
  timeoutMs: number;
  /** Bytes per second over each window; 0: no check. */
  minRate: number;
  rateWindowMs: number;
  signal?: AbortSignal;
  /** Where the open connection is kept until it closes, so the transport's close() can end it. */
  open?: Set<{ close(): void }>;
}

function networkFailure(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Refuses header values that would split the request (a token server could send a token with CRLF in it). */
function requestHead(url: URL, headers: Record<string, string>): string {
  let text = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n\0]/.test(name) || /[\r\n\0]/.test(value))
      throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `header ${JSON.stringify(name)} has a line break in its value`);
    text += `${name}: ${value}\r\n`;
  }
  // One exchange per connection: the body's end is framed by the parser, the socket closed after it.
  return `${text}connection: close\r\n\r\n`;
}

/** Sends GET `url` on a fresh connection; resolves with the response once its head has arrived. */
export function rawGet(url: URL, headers: Record<string, string>, options: RawExchangeOptions): Promise<RawResponse> {
  return new Promise<RawResponse>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(abortError(options.signal));
      return;
    }
    let head: string;
    try {
      head = requestHead(url, headers);
    } catch (error) {
      reject(error);
      return;
    }
    new Connection(url, head, options, resolve, reject);
  });
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  return Object.assign(new Error('The operation was aborted', { cause: reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}

/** One connection carrying one exchange: parses the head, then feeds the RawResponse. */
class Connection {
  private readonly socket: Socket;
  private readonly heads = new HeadParser();
  private response?: RawResponse;
  private settled = false;
  private moved = 0;
  private rateTimer?: NodeJS.Timeout;
  private readonly onAbort: () => void;

  constructor(
    url: URL,
    request: string,
    private readonly options: RawExchangeOptions,
    private readonly resolve: (res: RawResponse) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
    const port = Number(url.port) || (options.tls ? 443 : 80);
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const onread = { buffer, callback: (n: number, buf: Buffer) => this.onBytes(buf.subarray(0, n)) };
    // @types/node omits onread from these options; Node documents it for both net.connect and tls.connect.
    this.socket = options.tls ? tlsConnect({ host, port, onread, ...options.tls } as ConnectionOptions) : netConnect({ host, port, onread } as NetConnectOpts);
    this.socket.setNoDelay(true);
    this.socket.setTimeout(options.timeoutMs, () => this.fail(networkFailure(`no answer from ${url.host} in ${options.timeoutMs} ms`, 'ERR_CONVEYOR_TIMEOUT')));
    this.socket.on('error', (error) => this.fail(error));
    this.socket.on('end', () => this.onEnd());
    this.socket.on('close', () => this.onEnd());
    this.onAbort = () => this.fail(abortError(options.signal!));
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    options.open?.add(this);
    this.moved += request.length;
    this.socket.write(request);
    if (options.minRate > 0) this.watchRate(url.host);
  }

  /** The minimum-rate rule of transport.ts's watchRate, on this socket: bytes both ways per window. */
  private watchRate(host: string): void {
    const { minRate, rateWindowMs } = this.options;
    const minBytes = Math.max(1, Math.ceil((minRate * rateWindowMs) / 1000));
    let mark = this.moved;
    this.rateTimer = setInterval(() => {
      if (this.moved - mark >= minBytes) {
        mark = this.moved;
        return;
      }
      this.fail(
        networkFailure(`${host}: ${this.moved - mark} bytes moved in ${rateWindowMs / 1000} s, fewer than the ${minBytes} required`, 'ERR_CONVEYOR_SLOW'),
      );
    }, rateWindowMs);
    this.rateTimer.unref();
  }

  /** onread's callback; false pauses the socket. */
  private onBytes(data: Buffer): boolean {
    this.moved += data.length;
    try {
      if (this.response) return this.response.feed(data);
      const found = this.heads.push(data);
      if (!found) return true;
      const response = new RawResponse(found.head.statusCode, found.head.statusMessage, found.head.headers, new BodyDecoder(framingOf(found.head)), this);
      this.response = response;
      this.settled = true;
      // The body waits (socket paused) until the caller picks how to read it; what came with the head is kept.
      response.hold(found.rest);
      this.resolve(response);
      return response.feedPaused();
    } catch (error) {
      this.fail(error);
      return false;
    }
  }

  private onEnd(): void {
    if (this.response) {
      this.response.ended();
      return;
    }
    const where = this.heads.buffered > 0 ? 'in the middle of the response head' : 'before answering';
    this.fail(networkFailure(`socket hang up: the registry closed the connection ${where}`, 'ECONNRESET'));
  }

  /** Ends the exchange with `error` (or quietly, without one). */
  fail(error?: unknown): void {
    this.close();
    if (error === undefined) return;
    if (!this.settled) {
      this.settled = true;
      this.reject(error);
    } else this.response?.destroy(error as Error);
  }

  close(): void {
    this.options.open?.delete(this);
    clearInterval(this.rateTimer);
    this.options.signal?.removeEventListener('abort', this.onAbort);
    this.socket.destroy();
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    if (!this.socket.destroyed) this.socket.resume();
  }
}

/**
 * A response read off our own socket: statusCode and headers as an
 * IncomingMessage has them; the body either streamed (copies, for small
 * bodies) or handed to `consume`'s sink as views of the reused buffer.
 */
export class RawResponse extends Readable {
  private mode: 'held' | 'stream' | 'sink' = 'held';
  private held: Buffer[] = [];
  private sink?: (view: Buffer) => void;
  private settle?: { resolve: () => void; reject: (error: unknown) => void };
  private finished = false;
  /** Whether the reader was told of the body's end. */
  private told = false;
  private wantsMore = true;

  constructor(
    readonly statusCode: number,
    readonly statusMessage: string,
    readonly headers: IncomingHttpHeaders,
    private readonly body: BodyDecoder,
    private readonly connection: Connection,
  ) {
    super();
  }

  /** Body bytes handed on so far. */
  get received(): number {
    return this.body.received;
  }

  /** Keeps a copy of body bytes that arrive before a reader chose how to read (the buffer is reused). */
  hold(data: Buffer): void {
    if (data.length > 0) this.held.push(Buffer.from(data));
  }

  /** After the head: whether the socket keeps reading now (not until a reader is there). */
  feedPaused(): boolean {
    if (this.body.done) this.finish();
    return false;
  }

  /**
   * Reads the whole body into `sink`, one view of the socket's buffer per
   * call (valid only during the call: hash and write it there). Resolves at
   * the body's end; rejects with the connection's error, or with what `sink`
   * threw (the connection is closed then).
   */
  consume(sink: (view: Buffer) => void): Promise<void> {
    if (this.mode !== 'held') return Promise.reject(new Error('[internal error] a raw response body read twice'));
    this.mode = 'sink';
    this.sink = sink;
    const done = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    if (this.destroyed) this.settle?.reject(this.errored ?? networkFailure('aborted', 'ECONNRESET'));
    else this.release();
    return done;
  }

  /** Body bytes from the socket; returns whether the socket keeps reading. */
  feed(data: Buffer): boolean {
    if (this.mode === 'held') {
      this.hold(data);
      return false;
    }
    this.wantsMore = true;
    const complete = this.body.push(data, this.mode === 'sink' ? this.sink! : (view) => this.pushCopy(view));
    if (complete) {
      this.finish();
      return false;
    }
    return this.wantsMore;
  }

  /** The connection ended: complete for a close-delimited body, else the body broke off. */
  ended(): void {
    if (this.finished || this.destroyed) return;
    if (this.body.end()) {
      this.finish();
      return;
    }
    const length = this.body.length;
    this.connection.fail(
      networkFailure(`the connection closed after ${this.body.received}${length === undefined ? '' : ` of ${length}`} body bytes`, 'ECONNRESET'),
    );
  }

  override _read(): void {
    if (this.mode === 'held') {
      this.mode = 'stream';
      this.release();
    } else if (!this.finished) this.connection.resume();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.connection.close();
    if (!this.finished) this.settle?.reject(error ?? networkFailure('aborted', 'ECONNRESET'));
    // As IncomingMessage does: an error nobody listens for (the body was never read) is not thrown.
    callback(this.listenerCount('error') > 0 ? error : null);
  }

  private pushCopy(view: Buffer): void {
    if (!this.push(Buffer.from(view))) this.wantsMore = false;
  }

  /** Hands on the bytes held so far, then lets the socket read. */
  private release(): void {
    const held = this.held;
    this.held = [];
    try {
      for (const data of held) {
        if (this.finished) break;
        this.feed(data);
      }
    } catch (error) {
      this.connection.fail(error);
      return;
    }
    if (this.finished) this.settleFinished();
    else this.connection.resume();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.connection.close();
    this.settleFinished();
  }

  /** The body's end, told to whoever reads it (once a reader is there). */
  private settleFinished(): void {
    if (this.told || this.mode === 'held') return;
    this.told = true;
    if (this.mode === 'stream') this.push(null);
    else if (this.mode === 'sink') this.settle?.resolve();
  }
}
