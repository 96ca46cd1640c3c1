/**
 * The transport: one HTTP exchange with a registry or the hosts it sends us
 * to, on node:http and node:https (not fetch: we need TLS verification
 * control, manual redirects and a cheap start-up; both modules are imported
 * on the first request, not before).
 *
 * - TLS: verified against Node's built-in roots, then the system bundle for a
 *   certificate they do not verify (a CA the administrator added); a CA file,
 *   SSL_CERT_FILE (replacing the system bundle) and Docker's
 *   /etc/docker/certs.d/<host>/*.crt build their own context. `insecure` (or a
 *   host in `insecureRegistries`) skips verification for that host only. A
 *   certificate that fails verification is never silently accepted.
 * - A minimum transfer rate (bytes per window) on every exchange, headers and
 *   body: the idle timeout alone restarts with every byte, so a registry could
 *   hold a pull for ever by sending one byte a minute.
 * - Redirects are not followed here; `redirectTarget` is the rule the caller
 *   follows them by (and when Authorization must be dropped).
 * - Request bodies (uploads): a string or Buffer, or a `ReopenableBody` that
 *   opens a fresh stream for every attempt, so a retry, a redirect or an
 *   answered 401 sends the same bytes again without holding a layer in memory.
 *   A body stream that fails (a read error) ends the exchange with its error.
 *
 * On failure `send` rejects with Node's own network error (its `code`:
 * ECONNRESET, a certificate code, ERR_CONVEYOR_TIMEOUT, ERR_CONVEYOR_SLOW),
 * which retry.ts classifies and error-map.ts turns into a ConveyorError;
 * `readBody` throws ConveyorErrors itself (ERR_REGISTRY_PROTOCOL for a body
 * over its cap, ERR_REGISTRY_UNAVAILABLE for one that breaks off); a CA file
 * that cannot be read is ERR_REGISTRY_TLS.
 */
import type { ClientRequest, Agent as HttpAgent, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Agent as HttpsAgent } from 'node:https';
import type { SecureContext } from 'node:tls';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { registryApiHost } from '@conveyor/lib-common/reference';
import type { RawMethod, RawResponse, RawSocketPool } from './raw-exchange.js';

/**
 * A response as the client's code reads it: node:http's IncomingMessage, or
 * raw-exchange.ts's RawResponse for bodiless GETs and HEADs (both Readables
 * with a status and headers).
 */
export interface HttpResponse extends Readable {
  statusCode?: number;
  headers: IncomingHttpHeaders;
}

/** True for a raw-socket response, whose body blob.ts reads with `consume` (views of one reused buffer). */
export function isRawResponse(res: HttpResponse): res is RawResponse {
  return typeof (res as Partial<RawResponse>).consume === 'function';
}

export interface TransportOptions {
  /** Skip TLS certificate verification (and allow plain-HTTP fallback) for every registry. */
  insecure?: boolean;
  /**
   * Registries (host[:port], as in references) treated as `insecure` alone,
   * like Docker's `insecure-registries`: no certificate verification and a
   * plain-HTTP fallback there, full verification everywhere else (including
   * hosts they redirect to).
   */
  insecureRegistries?: string[];
  /** Extra trusted CA certificates (PEM file), added to the system ones. */
  caFile?: string;
  /** A CA bundle that replaces the system one (the SSL_CERT_FILE convention). */
  sslCertFile?: string;
  /** Docker's per-registry certificate directory; default /etc/docker/certs.d. */
  certsDir?: string;
  /** Socket idle timeout in ms (default 60 s). */
  timeoutMs?: number;
  /**
   * Least average rate, in bytes per second, an exchange must keep up over
   * each `rateWindowMs` once it has started (waiting for the answer included);
   * slower is a network failure (retried, then ERR_REGISTRY_UNAVAILABLE).
   * Default 1 KiB/s; 0 turns the check off.
   */
  minRate?: number;
  /** The window the minimum rate is measured over, in ms (default 60 s, the idle timeout). */
  rateWindowMs?: number;
  userAgent?: string;
}

/**
 * A body sent from a stream, `length` bytes: `open` is called once per
 * attempt (a retry, a redirect or a 401 answered send it again), so it must
 * yield the same bytes each time (a file read from the same offset).
 */
export interface ReopenableBody {
  length: number;
  open(): Readable;
}

/** What a request may carry: small bodies in memory, blobs as re-openable streams. */
export type RequestBody = string | Buffer | ReopenableBody;

/** The Content-Length of a body. */
export function bodyLength(body: RequestBody): number {
  if (typeof body === 'string') return Buffer.byteLength(body);
  return Buffer.isBuffer(body) ? body.length : body.length;
}

export const DEFAULT_MIN_RATE = 1024;
export const DEFAULT_RATE_WINDOW_MS = 60_000;

/** What a too-slow exchange (ERR_CONVEYOR_SLOW) tells the user, wherever it is reported. */
export const SLOW_HINT = 'the registry sends too slowly; on a slow link lower --min-rate (0 turns the check off) or widen --rate-window';

const CERT_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|HOSTNAME/;

/** True when the server answered a TLS hello with something that is not TLS (a plain-HTTP registry). */
export function isNotTlsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code ?? '';
  if (CERT_ERROR.test(code)) return false;
  return code.startsWith('ERR_SSL_') || code === 'EPROTO' || code === 'ECONNRESET';
}

/** True when a certificate did not verify (unknown CA, self-signed, wrong name). */
export function isCertError(error: unknown): boolean {
  return CERT_ERROR.test((error as NodeJS.ErrnoException)?.code ?? '');
}

/** Reads a whole response body, failing beyond `max` bytes (hostile registries). */
export async function readBody(res: HttpResponse, max: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > max) {
    res.destroy();
    throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what} is ${declared} bytes, more than the ${max} accepted`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > max) {
        res.destroy();
        throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${what} is more than the ${max} bytes accepted`);
      }
      chunks.push(chunk);
    }
  } catch (error) {
    // A body that breaks off (reset, idle timeout, too slow) is the registry's failure, not ours.
    if (error instanceof ConveyorError) throw error;
    const code = (error as NodeJS.ErrnoException)?.code;
    throw new ConveyorError('ERR_REGISTRY_UNAVAILABLE', `${what}: ${(error as Error)?.message ?? String(error)}`, {
      cause: error,
      ...(code === 'ERR_CONVEYOR_SLOW' ? { hint: SLOW_HINT } : {}),
    });
  }
  return Buffer.concat(chunks);
}

/** Discards a response body we do not read, so its socket goes back to the pool. */
export function drain(res: HttpResponse): void {
  res.resume();
  res.on('error', () => undefined);
}

/** The host to open a socket to: a URL's hostname without an IPv6 literal's brackets (`[::1]` → `::1`). */
export function socketHost(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

export function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** At most this many redirects per request (blob storage, CDNs). */
const MAX_REDIRECTS = 10;

/**
 * Where a 3xx answer sends us, or undefined when `res` is not a redirect.
 * `keepAuthorization` is false off the registry's host, and on an
 * https → http hop even on the same host: credentials are for the registry
 * only, never for blob storage elsewhere, and never in clear (default ports
 * make https://h and http://h the same `host`). `hops` is the number of
 * redirects already followed. Throws ERR_REGISTRY_PROTOCOL past
 * MAX_REDIRECTS or for a scheme other than http(s).
 */
export function redirectTarget(
  res: HttpResponse,
  url: URL,
  apiHost: string,
  hops: number,
  registry: string,
  path: string,
): { url: URL; keepAuthorization: boolean } | undefined {
  const status = res.statusCode ?? 0;
  if (status < 300 || status >= 400 || status === 304 || !res.headers.location) return undefined;
  drain(res);
  if (hops >= MAX_REDIRECTS) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${registry}: too many redirects for ${path}`);
  const next = new URL(res.headers.location, url);
  if (next.protocol !== 'http:' && next.protocol !== 'https:')
    throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${registry} redirected to ${next.protocol} URL`);
  return { url: next, keepAuthorization: !(next.host !== apiHost || (url.protocol === 'https:' && next.protocol === 'http:')) };
}

/**
 * Ends an exchange that moves fewer than `minRate` bytes per second, averaged
 * over each window, from the moment it has a socket until the response is
 * read (or dropped). Measured on the socket in both directions, so the TLS
 * handshake, an upload's body, the wait for headers and the response body all
 * count; keep-alive sockets are measured from where this exchange starts.
 */
function watchRate(req: ClientRequest, host: string, minRate: number, windowMs: number): void {
  const minBytes = Math.max(1, Math.ceil((minRate * windowMs) / 1000));
  let res: IncomingMessage | undefined;
  let timer: NodeJS.Timeout | undefined;
  const stop = () => clearInterval(timer);
  // Timed from the socket on: a request queued for a free socket is not slow.
  req.on('socket', (socket: Socket) => {
    // Both directions: an upload reads almost nothing until the registry answers.
    const moved = () => socket.bytesRead + socket.bytesWritten;
    let mark = moved();
    timer = setInterval(() => {
      const now = moved();
      if (now - mark >= minBytes) {
        mark = now;
        return;
      }
      stop();
      const error = Object.assign(new Error(`${host}: ${now - mark} bytes moved in ${windowMs / 1000} s, fewer than the ${minBytes} required`), {
        code: 'ERR_CONVEYOR_SLOW',
      });
      if (res) res.destroy(error);
      req.destroy(error);
    }, windowMs);
    timer.unref();
  });
  req.on('response', (r: IncomingMessage) => {
    res = r;
    r.on('end', stop);
    r.on('close', stop);
  });
  req.on('close', () => {
    if (!res) stop();
  });
  req.on('error', stop);
}

export class Transport {
  private readonly options: TransportOptions;
  private readonly secureContexts = new Map<string, Promise<SecureContext | undefined>>();
  /** Hosts whose certificates need the system CA bundle. */
  private readonly systemCa = new Set<string>();
  /** Raw-socket exchanges still open (a response not read to its end) and the pool of idle ones, ended by close(). */
  private readonly rawConnections = new Set<{ close(): void }>();
  /** Idle raw-socket connections, reused by the next blob GET to the same host and port. */
  private rawPool?: RawSocketPool;
  private httpAgent?: HttpAgent;
  private httpsAgent?: HttpsAgent;
  private httpModule?: typeof import('node:http');
  private httpsModule?: typeof import('node:https');

  constructor(options: TransportOptions = {}) {
    this.options = options;
  }

  /** Destroys the keep-alive agents and any raw-socket exchange left open, so the process can exit. */
  close(): void {
    this.httpAgent?.destroy();
    this.httpsAgent?.destroy();
    for (const connection of this.rawConnections) connection.close();
  }

  /** Whether TLS verification is off for this registry or host (`--insecure`, `--insecure-registry`). */
  isInsecure(host: string): boolean {
    return Boolean(this.options.insecure) || (this.options.insecureRegistries ?? []).some((r) => r === host || registryApiHost(r) === host);
  }

  /** One HTTP exchange; resolves with the response head, whatever its status. */
  async send(url: URL, method: string, headers: Record<string, string>, signal?: AbortSignal, body?: RequestBody): Promise<IncomingMessage> {
    const https = url.protocol === 'https:';
    const allHeaders: Record<string, string> = { 'user-agent': this.options.userAgent ?? 'conveyor', ...headers };
    if (body !== undefined) allHeaders['content-length'] = String(bodyLength(body));
    let requestFn: typeof import('node:http').request;
    const extra: Record<string, unknown> = {};
    let secureContext: SecureContext | undefined;
    if (https) {
      this.httpsModule ??= await import('node:https');
      this.httpsAgent ??= new this.httpsModule.Agent({ keepAlive: true, maxSockets: 16 });
      requestFn = this.httpsModule.request as unknown as typeof import('node:http').request;
      extra.agent = this.httpsAgent;
      const tls = await this.tlsOptions(url);
      Object.assign(extra, tls);
      secureContext = tls.secureContext;
    } else {
      this.httpModule ??= await import('node:http');
      this.httpAgent ??= new this.httpModule.Agent({ keepAlive: true, maxSockets: 16 });
      requestFn = this.httpModule.request;
      extra.agent = this.httpAgent;
    }
    const timeout = this.options.timeoutMs ?? 60_000;
    const attempt = new Promise<IncomingMessage>((resolve, reject) => {
      const req = requestFn(url, { method, headers: allHeaders, signal, ...extra }, resolve);
      const minRate = this.options.minRate ?? DEFAULT_MIN_RATE;
      if (minRate > 0) watchRate(req, url.host, minRate, this.options.rateWindowMs ?? DEFAULT_RATE_WINDOW_MS);
      // Covers the response body too: a stalled download is a network failure.
      req.setTimeout(timeout, () => {
        const error = Object.assign(new Error(`no answer from ${url.host} in ${timeout} ms`), { code: 'ERR_CONVEYOR_TIMEOUT' });
        req.destroy(error);
      });
      req.on('error', reject);
      if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) {
        req.end(body);
        return;
      }
      const stream = body.open();
      // A read error ends the exchange with that error; an exchange that ends first stops the read.
      stream.on('error', (error) => req.destroy(error));
      req.on('close', () => stream.destroy());
      stream.pipe(req);
    });
    if (!https || this.isInsecure(url.host) || secureContext) return attempt;
    return this.orWithSystemCa(url, attempt, () => this.send(url, method, headers, signal, body));
  }

  /**
   * A verified exchange whose certificate no built-in root signs is made
   * again, once per host, against the system bundle (locally added CAs):
   * `again` runs after the host is marked for it. Other failures pass.
   */
  private orWithSystemCa<T>(url: URL, attempt: Promise<T>, again: () => Promise<T>): Promise<T> {
    return attempt.catch((error) => {
      if (!isCertError(error) || this.systemCa.has(url.host)) throw error;
      this.systemCa.add(url.host);
      return again();
    });
  }

  /**
   * Whether the server at `url` answers a TLS hello: the scheme probe of a
   * registry that may fall back to plain HTTP. A ClientHello written on a
   * plain socket (tls-hello.ts), whose answer's first byte tells: no
   * request goes out on it (the real request after it makes a verified
   * handshake). So a plain-HTTP registry costs neither node:tls nor
   * node:crypto, nor CA certificates: not SSL_CERT_FILE's bundle (35 ms of
   * CPU in a fresh process) nor Node's built-in roots (30 ms), which only a
   * TLS registry needs. A connection closed or reset without an answer is
   * not TLS, as before; other socket errors (refused, unreachable, timed
   * out) reject.
   */
  async speaksTls(url: URL): Promise<boolean> {
    const [{ connect }, { clientHello, answersTls }, { randomHex }] = await Promise.all([
      import('node:net'),
      import('./tls-hello.js'),
      import('@conveyor/lib-common/digest'),
    ]);
    const timeout = this.options.timeoutMs ?? 60_000;
    const host = socketHost(url);
    const { servername } = await this.tlsOptionsFor(url, true);
    const hello = clientHello((bytes) => Buffer.from(randomHex(bytes), 'hex'), servername);
    return new Promise<boolean>((resolve, reject) => {
      const socket = connect({ host, port: Number(url.port) || 443 });
      const answer = (tls: boolean) => {
        socket.destroy();
        resolve(tls);
      };
      socket.setTimeout(timeout, () =>
        socket.destroy(Object.assign(new Error(`no answer from ${url.host} in ${timeout} ms`), { code: 'ERR_CONVEYOR_TIMEOUT' })),
      );
      socket.once('connect', () => socket.write(hello));
      socket.once('data', (first: Buffer) => answer(answersTls(first)));
      socket.once('end', () => answer(false));
      socket.once('error', (error: NodeJS.ErrnoException) => (isNotTlsError(error) || error.code === 'EPIPE' ? answer(false) : reject(error)));
    });
  }

  /**
   * A bodiless GET or HEAD on a socket of our own (raw-exchange.ts: one
   * reused read buffer; no node:http), with the TLS rules, idle timeout and
   * minimum rate of `send`. Resolves with the response head, whatever its
   * status.
   */
  async sendRaw(url: URL, headers: Record<string, string>, signal?: AbortSignal, method: RawMethod = 'GET'): Promise<RawResponse> {
    const { rawRequest, RawSocketPool } = await import('./raw-exchange.js');
    if (!this.rawPool) {
      this.rawPool = new RawSocketPool();
      this.rawConnections.add(this.rawPool);
    }
    const https = url.protocol === 'https:';
    const tls = https ? await this.tlsOptions(url) : undefined;
    const attempt = rawRequest(
      method,
      url,
      { 'user-agent': this.options.userAgent ?? 'conveyor', ...headers },
      {
        tls,
        timeoutMs: this.options.timeoutMs ?? 60_000,
        minRate: this.options.minRate ?? DEFAULT_MIN_RATE,
        rateWindowMs: this.options.rateWindowMs ?? DEFAULT_RATE_WINDOW_MS,
        signal,
        open: this.rawConnections,
        pool: this.rawPool,
      },
    );
    if (!https || !tls?.rejectUnauthorized || tls.secureContext) return attempt;
    return this.orWithSystemCa(url, attempt, () => this.sendRaw(url, headers, signal, method));
  }

  /** How to verify a host's certificate: off where it is insecure, else against tlsContext's roots. */
  private tlsOptions(url: URL): Promise<{ rejectUnauthorized: boolean; secureContext?: SecureContext; servername?: string }> {
    return this.tlsOptionsFor(url, this.isInsecure(url.host));
  }

  private async tlsOptionsFor(url: URL, insecure: boolean): Promise<{ rejectUnauthorized: boolean; secureContext?: SecureContext; servername?: string }> {
    const secureContext = insecure ? undefined : await this.tlsContext(url.host, this.systemCa.has(url.host));
    return {
      rejectUnauthorized: !insecure,
      ...(secureContext ? { secureContext } : {}),
      servername: url.hostname.startsWith('[') || /^\d+\.\d+\.\d+\.\d+$/.test(url.hostname) ? undefined : url.hostname,
    };
  }

  /**
   * The TLS context for a host. Undefined means Node's built-in (Mozilla)
   * roots, which cost nothing until a certificate is checked; `system` adds
   * the system bundle, used when a certificate does not verify against the
   * built-in roots (a CA the administrator added). An explicit CA (--ca-file,
   * SSL_CERT_FILE, certs.d) always builds a context.
   */
  private async tlsContext(host: string, system: boolean): Promise<SecureContext | undefined> {
    const key = `${host}|${system}`;
    let context = this.secureContexts.get(key);
    if (!context) {
      context = this.buildTlsContext(host, system);
      this.secureContexts.set(key, context);
    }
    return context;
  }

  private async buildTlsContext(host: string, system: boolean): Promise<SecureContext | undefined> {
    const { readFile, readdir } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const extra: string[] = [];
    const certsDir = join(this.options.certsDir ?? '/etc/docker/certs.d', host.replace(/[/\\]/g, '_'));
    try {
      for (const name of (await readdir(certsDir)).sort()) {
        if (name.endsWith('.crt')) extra.push(await readFile(join(certsDir, name), 'utf8'));
      }
    } catch {
      // No per-registry certificates.
    }
    if (this.options.caFile) extra.push(await readCa(readFile, this.options.caFile));
    if (!system && !this.options.sslCertFile && extra.length === 0) return undefined;
    const tls = await import('node:tls');
    let base: string[];
    if (this.options.sslCertFile) {
      base = [await readCa(readFile, this.options.sslCertFile)];
    } else {
      const bundle = await readFile('/etc/ssl/certs/ca-certificates.crt', 'utf8').catch(() => undefined);
      base = bundle ? [bundle] : [...tls.rootCertificates];
    }
    return tls.createSecureContext({ ca: [...base, ...extra] });
  }
}

async function readCa(readFile: typeof import('node:fs/promises').readFile, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConveyorError('ERR_REGISTRY_TLS', `cannot read CA file ${file}: ${(error as Error).message}`);
  }
}
