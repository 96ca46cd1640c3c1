/**
 * The raw-socket exchange: one bodiless HTTP/1.1 request (a GET, or a HEAD)
 * on a net or tls socket of our own, read with `onread` into ONE reused
 * buffer per connection, so a large body costs no fresh memory per read
 * (node:http hands each 64 KB read over in a new Buffer: about 8,000 page
 * faults for a 30 MB blob in a fresh process), and a small answer (a
 * manifest, its HEAD, a config, a token) costs no node:http (about 7 ms of
 * CPU to load in a fresh process). Transport.sendRaw sets it up with the
 * same TLS rules as its node:http requests; the client's auth, redirects and
 * retries and blob.ts's resume, size and digest checks sit above it
 * unchanged.
 *
 * Connections are kept alive between exchanges to the same host and port
 * (a `RawSocketPool`, one per transport): a socket goes back to the pool
 * only when its response ended cleanly (its body complete as framed by
 * Content-Length or chunks, HTTP/1.1, no `Connection: close`, no byte beyond
 * the body), never after an error, an abort or a body left unread. A pooled
 * socket the server closed meanwhile is noticed (it is read while idle), and
 * a request on one that fails before any answer byte is sent again once on a
 * fresh connection: a GET or a HEAD is safe to repeat.
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
import type { ConnectionOptions, SecureContext } from 'node:tls';
import type { IncomingHttpHeaders } from 'node:http';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { BodyDecoder, framingOf, HeadParser } from './http-parser.js';
import { socketHost } from './transport.js';

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
  /** Idle connections to reuse, and where this one goes when its response ends cleanly; none: one exchange per connection. */
  pool?: RawSocketPool;
}

function networkFailure(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** The bodiless requests the raw path makes: blob and manifest GETs, token GETs, manifest HEADs. */
export type RawMethod = 'GET' | 'HEAD';

/** Refuses header values that would split the request (a token server could send a token with CRLF in it). */
function requestHead(method: RawMethod, url: URL, headers: Record<string, string>, keepAlive: boolean): string {
  let text = `${method} ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n\0]/.test(name) || /[\r\n\0]/.test(value))
      throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `header ${JSON.stringify(name)} has a line break in its value`);
    text += `${name}: ${value}\r\n`;
  }
  // HTTP/1.1 keeps the connection by default; the body's end is framed by the parser either way.
  return `${text}${keepAlive ? '' : 'connection: close\r\n'}\r\n`;
}

/**
 * Sends `method` `url` on an idle pooled connection or a fresh one; resolves
 * with the response once its head has arrived. The answer to a HEAD has no
 * body, whatever its Content-Length says.
 */
export async function rawRequest(method: RawMethod, url: URL, headers: Record<string, string>, options: RawExchangeOptions): Promise<RawResponse> {
  // Loaded for a TLS destination only: a plain-HTTP registry costs no node:tls.
  if (options.tls) tlsModule ??= await import('node:tls');
  return new Promise<RawResponse>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(abortError(options.signal));
      return;
    }
    let head: string;
    try {
      head = requestHead(method, url, headers, options.pool !== undefined);
    } catch (error) {
      reject(error);
      return;
    }
    new Connection(method, url, head, options, resolve, reject);
  });
}

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  if (reason instanceof Error && reason.name === 'AbortError') return reason;
  return Object.assign(new Error('The operation was aborted', { cause: reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}

/** node:tls, once a TLS destination asked for it. */
let tlsModule: typeof import('node:tls') | undefined;

/** Idle connections per destination (scheme, host, port and TLS settings), reused by the next GET there. */
export class RawSocketPool {
  private readonly idle = new Map<string, Channel[]>();
  /** At most this many idle connections per destination (the parallel downloads of one pull). */
  static readonly MAX_IDLE = 8;

  /** An idle connection to `key`, taken out of the pool; undefined when none is left. */
  take(key: string): Channel | undefined {
    const list = this.idle.get(key);
    for (let channel = list?.pop(); channel; channel = list?.pop()) {
      if (!channel.socket.destroyed) return channel;
    }
    return undefined;
  }

  /** Keeps an idle connection (closes it when the pool is full). */
  put(channel: Channel): void {
    let list = this.idle.get(channel.key);
    if (!list) {
      list = [];
      this.idle.set(channel.key, list);
    }
    if (list.length >= RawSocketPool.MAX_IDLE) {
      channel.socket.destroy();
      return;
    }
    list.push(channel);
  }

  /** Forgets a connection that closed while idle. */
  remove(channel: Channel): void {
    const list = this.idle.get(channel.key);
    const at = list?.indexOf(channel) ?? -1;
    if (at >= 0) list!.splice(at, 1);
  }

  /** Closes every idle connection (the transport's close()). */
  close(): void {
    for (const list of this.idle.values()) for (const channel of list) channel.socket.destroy();
    this.idle.clear();
  }
}

/** Distinct ids for TLS contexts, so connections verified against different roots are not mixed up. */
const contextIds = new WeakMap<object, number>();
let nextContextId = 0;

/** The pool key of a destination: what a reused connection must have in common with a fresh one. */
function destination(url: URL, tls: RawExchangeOptions['tls']): string {
  if (!tls) return `${url.protocol}//${url.host}`;
  let context = 0;
  if (tls.secureContext) {
    context = contextIds.get(tls.secureContext) ?? ++nextContextId;
    contextIds.set(tls.secureContext, context);
  }
  return `${url.protocol}//${url.host} ${tls.rejectUnauthorized} ${tls.servername ?? ''} ${context}`;
}

/**
 * A socket with its one reused read buffer, carrying one exchange at a time
 * (`exchange`); between exchanges it sits in a pool, read so that a close or
 * a stray byte from the server is noticed (and the socket dropped).
 */
class Channel {
  readonly socket: Socket;
  exchange?: Connection;
  private pool?: RawSocketPool;

  constructor(
    url: URL,
    readonly key: string,
    tls: RawExchangeOptions['tls'],
  ) {
    const host = socketHost(url);
    const port = Number(url.port) || (tls ? 443 : 80);
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const onread = { buffer, callback: (n: number, buf: Buffer) => this.onBytes(buf.subarray(0, n)) };
    // @types/node omits onread from these options; Node documents it for both net.connect and tls.connect.
    this.socket = tls ? tlsModule!.connect({ host, port, onread, ...tls } as ConnectionOptions) : netConnect({ host, port, onread } as NetConnectOpts);
    this.socket.setNoDelay(true);
    this.socket.on('timeout', () => this.exchange?.onTimeout());
    this.socket.on('error', (error) => (this.exchange ? this.exchange.fail(error) : this.drop()));
    this.socket.on('end', () => (this.exchange ? this.exchange.onEnd() : this.drop()));
    this.socket.on('close', () => (this.exchange ? this.exchange.onEnd() : this.drop()));
  }

  private onBytes(data: Buffer): boolean {
    if (this.exchange) return this.exchange.onBytes(data);
    // Nothing was asked: a server that talks unasked is not talked to again.
    this.drop();
    return false;
  }

  /** Starts carrying `exchange`. */
  carry(exchange: Connection, timeoutMs: number): void {
    this.pool?.remove(this);
    this.pool = undefined;
    this.exchange = exchange;
    this.socket.ref();
    this.socket.setTimeout(timeoutMs);
  }

  /** The exchange ended cleanly: the connection waits in `pool` for the next one. */
  idle(pool: RawSocketPool): void {
    this.exchange = undefined;
    this.socket.setTimeout(0);
    // An idle connection does not keep the process alive.
    this.socket.unref();
    this.pool = pool;
    pool.put(this);
    // Read again once the read that ended the body has returned (its `false` pauses the socket): a close is seen.
    setImmediate(() => {
      if (!this.exchange && !this.socket.destroyed) this.socket.resume();
    });
  }

  private drop(): void {
    this.pool?.remove(this);
    this.pool = undefined;
    this.socket.destroy();
  }
}

/** One exchange on a connection (pooled or fresh): parses the head, then feeds the RawResponse. */
class Connection {
  private channel?: Channel;
  private heads = new HeadParser();
  private response?: RawResponse;
  private settled = false;
  private moved = 0;
  /** Bytes of the answer seen so far (a reused connection that fails before any is tried again). */
  private answered = false;
  private reused = false;
  private keepAlive = false;
  private rateTimer?: NodeJS.Timeout;
  private readonly onAbort: () => void;
  private readonly key: string;

  constructor(
    private readonly method: RawMethod,
    private readonly url: URL,
    private readonly request: string,
    private readonly options: RawExchangeOptions,
    private readonly resolve: (res: RawResponse) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    this.key = destination(url, options.tls);
    this.onAbort = () => this.fail(abortError(options.signal!));
    options.signal?.addEventListener('abort', this.onAbort, { once: true });
    options.open?.add(this);
    this.start(options.pool?.take(this.key));
    if (options.minRate > 0) this.watchRate(url.host);
  }

  /** Sends the request on `pooled`, or on a fresh connection. */
  private start(pooled?: Channel): void {
    this.reused = pooled !== undefined;
    const channel = pooled ?? new Channel(this.url, this.key, this.options.tls);
    this.channel = channel;
    channel.carry(this, this.options.timeoutMs);
    this.moved += this.request.length;
    channel.socket.write(this.request);
    if (pooled) channel.socket.resume();
  }

  /**
   * A reused connection that failed before any byte of the answer (the
   * server closed it while idle, racing our request) is replaced once by a
   * fresh one; true when that was done.
   */
  private startedAgain(): boolean {
    if (!this.reused || this.answered || this.settled) return false;
    const stale = this.channel;
    this.channel = undefined;
    if (stale) {
      stale.exchange = undefined;
      stale.socket.destroy();
    }
    this.heads = new HeadParser();
    this.start();
    return true;
  }

  onTimeout(): void {
    this.fail(networkFailure(`no answer from ${this.url.host} in ${this.options.timeoutMs} ms`, 'ERR_CONVEYOR_TIMEOUT'));
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
  onBytes(data: Buffer): boolean {
    this.moved += data.length;
    this.answered = true;
    try {
      if (this.response) return this.response.feed(data);
      const found = this.heads.push(data);
      if (!found) return true;
      const { head } = found;
      const framing = framingOf(head, this.method);
      const close = String(head.headers.connection ?? '')
        .split(',')
        .some((token) => token.trim().toLowerCase() === 'close');
      this.keepAlive = head.httpVersion === '1.1' && !close && framing.kind !== 'close';
      const response = new RawResponse(head.statusCode, head.statusMessage, head.headers, new BodyDecoder(framing), this);
      this.response = response;
      this.settled = true;
      // The body waits (socket paused) until the caller picks how to read it; what came with the head is kept.
      response.hold(found.rest);
      this.resolve(response);
      return response.feedPaused(found.rest.length > 0);
    } catch (error) {
      this.fail(error);
      return false;
    }
  }

  onEnd(): void {
    if (this.response) {
      this.response.ended();
      return;
    }
    if (this.startedAgain()) return;
    const where = this.heads.buffered > 0 ? 'in the middle of the response head' : 'before answering';
    this.fail(networkFailure(`socket hang up: the registry closed the connection ${where}`, 'ECONNRESET'));
  }

  /** Ends the exchange with `error` (or quietly, without one). */
  fail(error?: unknown): void {
    if (error !== undefined && this.channel && !this.options.signal?.aborted && this.startedAgain()) return;
    this.close();
    if (error === undefined) return;
    if (!this.settled) {
      this.settled = true;
      this.reject(error);
    } else this.response?.destroy(error as Error);
  }

  /** Ends the exchange and its connection (an idle one in the pool is not this exchange's any more). */
  close(): void {
    this.detach();
    const channel = this.channel;
    this.channel = undefined;
    if (channel?.exchange === this) {
      channel.exchange = undefined;
      channel.socket.destroy();
    }
  }

  /**
   * The body is complete: the connection goes back to the pool when the
   * response allows it and nothing came after the body, else it is closed.
   */
  done(overrun: boolean): void {
    const channel = this.channel;
    if (!channel || channel.exchange !== this || !this.options.pool || !this.keepAlive || overrun || channel.socket.destroyed) {
      this.close();
      return;
    }
    this.detach();
    this.channel = undefined;
    channel.idle(this.options.pool);
  }

  private detach(): void {
    this.options.open?.delete(this);
    clearInterval(this.rateTimer);
    this.options.signal?.removeEventListener('abort', this.onAbort);
  }

  pause(): void {
    this.channel?.socket.pause();
  }

  resume(): void {
    const socket = this.channel?.socket;
    if (socket && !socket.destroyed) socket.resume();
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

  /**
   * After the head: whether the socket keeps reading now (not until a reader
   * is there). A response without a body (a HEAD's, a 204, Content-Length: 0)
   * is complete at once; bytes that came after its head (`extra`) are an
   * overrun, so the connection is not used again.
   */
  feedPaused(extra: boolean): boolean {
    if (this.body.done) {
      if (extra) this.body.overrun = true;
      this.finish();
    }
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
    this.connection.done(this.body.overrun);
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
