/**
 * An HTTP client for the OCI Distribution API / Docker Registry HTTP API v2,
 * on node:http and node:https (not fetch: we need TLS verification control,
 * manual redirects and a cheap start-up).
 *
 * - Scheme: HTTPS, verified against the system CAs (plus a CA file, or
 *   SSL_CERT_FILE instead of the system bundle, plus Docker's
 *   /etc/docker/certs.d/<host>/*.crt). Registries on localhost/127.0.0.0/8, and
 *   any with `insecure`, fall back to plain HTTP when the server does not
 *   speak TLS; `plainHttp` skips TLS. `insecure` also skips verification.
 *   A certificate that fails verification is never silently accepted.
 * - Auth: anonymous first; a 401 challenge selects Basic or Bearer (token per
 *   repository scope, cached for its lifetime). Credentials are looked up
 *   lazily, only when a registry asks for them.
 * - Redirects are followed by hand (blob storage); Authorization is never sent
 *   to another host, nor over plain HTTP after an HTTPS hop. Credentials go to
 *   a token realm over HTTPS only, unless the registry is one where plain HTTP
 *   is accepted anyway (see mayCredentialRealm).
 * - A minimum transfer rate (bytes per window) on every exchange, headers and
 *   body: the idle timeout alone restarts with every byte, so a registry could
 *   hold a pull for ever by sending one byte a minute.
 * - Retries with exponential backoff (and Retry-After) on 429, 5xx and
 *   connection resets; mapped to stable error codes once they run out.
 */
import type { ClientRequest, Agent as HttpAgent, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Agent as HttpsAgent } from 'node:https';
import type { SecureContext } from 'node:tls';
import { sha256 } from '@conveyor/lib-common/digest';
import { ConveyorError, type ErrorCode } from '@conveyor/lib-common/errors';
import { MANIFEST_ACCEPT, MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import { isLoopbackRegistry, registryApiHost } from '@conveyor/lib-common/reference';
import { parseChallenge, parseTokenResponse, repositoryScope, type Challenge, type TokenResponse } from './auth.js';
import type { Credentials } from './credentials.js';

export interface RegistryClientOptions {
  /** Skip TLS certificate verification (and allow plain-HTTP fallback) for every registry. */
  insecure?: boolean;
  /** Talk plain HTTP to every registry. */
  plainHttp?: boolean;
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
  /** Finds credentials for a registry when it asks for them. */
  credentials?: (registry: string) => Promise<Credentials | undefined>;
  /** Retries after the first attempt for 429/5xx/resets (default 4). */
  retries?: number;
  /** First backoff delay in ms, doubled per retry (default 200). */
  retryDelayMs?: number;
  /** Longest single wait, also caps Retry-After (default 10 s). */
  maxRetryDelayMs?: number;
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
  /** Told about each retry, for a warning on stderr. */
  onRetry?: (message: string) => void;
}

export interface RepositoryRef {
  /** As in references: `docker.io`, `127.0.0.1:5000`. */
  registry: string;
  repository: string;
}

export interface RequestOptions {
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Retry 429/5xx/resets here (default true). Blob downloads retry in their own loop. */
  retry?: boolean;
}

export interface ManifestResponse {
  body: Buffer;
  mediaType: string;
  digest: string;
}

/** Manifests and indexes are read into memory: capped as containerd caps them. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MIN_RATE = 1024;
export const DEFAULT_RATE_WINDOW_MS = 60_000;

type Scheme = 'https' | 'http';

interface AuthState {
  challenge?: Challenge;
  tokens: Map<string, TokenResponse>;
  credentials?: Promise<Credentials | undefined>;
}

const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const RETRY_ERRNO = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED', 'EAI_AGAIN', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_CONVEYOR_TIMEOUT', 'ERR_CONVEYOR_SLOW', 'UND_ERR_SOCKET']);
const CERT_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ALTNAME|HOSTNAME/;

export function isRetryableNetworkError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && RETRY_ERRNO.has(code);
}

/** True when the server answered a TLS hello with something that is not TLS (a plain-HTTP registry). */
function isNotTlsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code ?? '';
  if (CERT_ERROR.test(code)) return false;
  return code.startsWith('ERR_SSL_') || code === 'EPROTO' || code === 'ECONNRESET';
}

function isCertError(error: unknown): boolean {
  return CERT_ERROR.test((error as NodeJS.ErrnoException)?.code ?? '');
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Reads a whole response body, failing beyond `max` bytes (hostile registries). */
export async function readBody(res: IncomingMessage, max: number, what: string): Promise<Buffer> {
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
    throw new ConveyorError('ERR_REGISTRY_UNAVAILABLE', `${what}: ${(error as Error)?.message ?? String(error)}`, { cause: error, ...(code === 'ERR_CONVEYOR_SLOW' ? { hint: SLOW_HINT } : {}) });
  }
  return Buffer.concat(chunks);
}

const SLOW_HINT = 'the registry sends too slowly; on a slow link lower --min-rate (0 turns the check off) or widen --rate-window';

/**
 * Ends an exchange that moves fewer than `minRate` bytes per second, averaged
 * over each window, from the moment it has a socket until the response is
 * read (or dropped). Measured on the socket, so the TLS handshake, the wait
 * for headers and the body all count; keep-alive sockets are measured from
 * where this exchange starts.
 */
function watchRate(req: ClientRequest, host: string, minRate: number, windowMs: number): void {
  const minBytes = Math.max(1, Math.ceil((minRate * windowMs) / 1000));
  let res: IncomingMessage | undefined;
  let timer: NodeJS.Timeout | undefined;
  const stop = () => clearInterval(timer);
  // Timed from the socket on: a request queued for a free socket is not slow.
  req.on('socket', (socket: Socket) => {
    let mark = socket.bytesRead;
    timer = setInterval(() => {
      const now = socket.bytesRead;
      if (now - mark >= minBytes) {
        mark = now;
        return;
      }
      stop();
      const error = Object.assign(new Error(`${host} sent ${now - mark} bytes in ${windowMs / 1000} s, fewer than the ${minBytes} required`), { code: 'ERR_CONVEYOR_SLOW' });
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

function drain(res: IncomingMessage): void {
  res.resume();
  res.on('error', () => undefined);
}

export class RegistryClient {
  private readonly options: RegistryClientOptions;
  private readonly schemes = new Map<string, Scheme>();
  private readonly auth = new Map<string, AuthState>();
  private readonly secureContexts = new Map<string, Promise<SecureContext | undefined>>();
  /** Hosts whose certificates need the system CA bundle. */
  private readonly systemCa = new Set<string>();
  private httpAgent?: HttpAgent;
  private httpsAgent?: HttpsAgent;
  private httpModule?: typeof import('node:http');
  private httpsModule?: typeof import('node:https');

  constructor(options: RegistryClientOptions = {}) {
    this.options = options;
  }

  /** Destroys the keep-alive agents so the process can exit. */
  close(): void {
    this.httpAgent?.destroy();
    this.httpsAgent?.destroy();
  }

  /** The scheme a registry was reached with (after a first request), for messages and tests. */
  schemeOf(registry: string): Scheme | undefined {
    return this.schemes.get(registry);
  }

  // ---------------------------------------------------------------- API calls

  /** GETs a manifest or index by tag or digest, verified against the digest when one was asked for. */
  async getManifest(ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<ManifestResponse> {
    const what = `manifest ${ref.registry}/${ref.repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const res = await this.request(ref, `/v2/${ref.repository}/manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT }, signal });
    if (res.statusCode !== 200) await this.fail(res, ref, what);
    const body = await readBody(res, MAX_MANIFEST_BYTES, what);
    const digest = sha256(body);
    const contentType = (res.headers['content-type'] ?? '').split(';')[0].trim();
    // schema1's digest covers the payload without its signatures, so it cannot be
    // verified like the others; it is refused before that.
    if (contentType === MEDIA_TYPES.dockerSchema1 || contentType === MEDIA_TYPES.dockerSchema1Signed || looksLikeSchema1(body)) {
      throw new ConveyorError('ERR_MANIFEST_UNSUPPORTED', `${what} is a Docker schema1 manifest, which is not supported`, {
        hint: 'schema1 is deprecated and unsafe (no content-addressed config); push the image again with a current client (docker, skopeo, buildah) to get a schema2 or OCI manifest',
        details: { mediaType: contentType },
      });
    }
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `${what}: the registry sent content with digest ${digest}`, { hint: 'the registry is broken or lying; nothing was stored' });
    }
    const header = res.headers['docker-content-digest'];
    if (typeof header === 'string' && header.startsWith('sha256:') && header !== digest) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `${what}: Docker-Content-Digest says ${header} but the content is ${digest}`);
    }
    return { body, digest, mediaType: contentType };
  }

  /**
   * HEADs a manifest: its digest without the body. Undefined when the registry
   * does not support HEAD or sends no digest (the caller then GETs).
   */
  async headManifest(ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<{ digest: string; mediaType: string; size?: number } | undefined> {
    const what = `manifest ${ref.registry}/${ref.repository}:${reference}`;
    const res = await this.request(ref, `/v2/${ref.repository}/manifests/${reference}`, { method: 'HEAD', headers: { accept: MANIFEST_ACCEPT }, signal });
    if (res.statusCode === 405 || res.statusCode === 400) {
      drain(res);
      return undefined;
    }
    if (res.statusCode !== 200) await this.fail(res, ref, what);
    drain(res);
    const digest = res.headers['docker-content-digest'];
    if (typeof digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(digest)) return undefined;
    const size = Number(res.headers['content-length']);
    return { digest, mediaType: (res.headers['content-type'] ?? '').split(';')[0].trim(), size: Number.isFinite(size) ? size : undefined };
  }

  /** GETs a small blob (a config) into memory and verifies it. */
  async getSmallBlob(ref: RepositoryRef, digest: string, size: number, max: number, signal?: AbortSignal): Promise<Buffer> {
    const what = `blob ${digest}`;
    if (size > max) throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} is declared as ${size} bytes, more than the ${max} accepted`);
    const res = await this.request(ref, `/v2/${ref.repository}/blobs/${digest}`, { signal });
    if (res.statusCode !== 200) await this.fail(res, ref, what);
    const body = await readBody(res, max, what);
    const actual = sha256(body);
    if (actual !== digest) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `${what} from ${ref.registry}: the content has digest ${actual}`, { hint: 'the registry is broken or lying; nothing was stored' });
    }
    if (body.length !== size) throw new ConveyorError('ERR_SIZE_MISMATCH', `${what}: ${body.length} bytes, the manifest says ${size}`);
    return body;
  }

  /**
   * Starts a blob download (optionally from `offset` with a Range request) and
   * returns the response, status 200 or 206. Network failures are not retried
   * here: the caller resumes from what it has.
   */
  async openBlob(ref: RepositoryRef, digest: string, offset: number, signal?: AbortSignal): Promise<IncomingMessage> {
    const headers: Record<string, string> = {};
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const res = await this.request(ref, `/v2/${ref.repository}/blobs/${digest}`, { headers, signal });
    if (res.statusCode === 200 || res.statusCode === 206) return res;
    if (res.statusCode === 416) {
      drain(res);
      return res;
    }
    return this.fail(res, ref, `blob ${digest}`);
  }

  /** Throws the stable error for a failed response (reads a bounded error body for the message). */
  async fail(res: IncomingMessage, ref: RepositoryRef, what: string): Promise<never> {
    const status = res.statusCode ?? 0;
    let detail = '';
    try {
      const text = (await readBody(res, 64 * 1024, 'error body')).toString('utf8');
      const json = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
      const first = json.errors?.[0];
      if (first) detail = [first.code, first.message].filter(Boolean).join(': ');
    } catch {
      // Not JSON, or no body (HEAD): the status says enough.
    }
    const why = `HTTP ${status}${detail ? ` ${detail}` : ''}`;
    const name = `${ref.registry}/${ref.repository}`;
    let code: ErrorCode;
    let hint: string | undefined;
    if (status === 401) {
      code = 'ERR_REGISTRY_UNAUTHORIZED';
      hint = `log in to ${ref.registry} (docker login writes ~/.docker/config.json, which img-fetch reads; DOCKER_CONFIG picks another directory)`;
    } else if (status === 403) {
      code = 'ERR_REGISTRY_DENIED';
      hint = `your credentials for ${ref.registry} do not allow pulling ${ref.repository}`;
    } else if (status === 404) {
      code = 'ERR_REGISTRY_NOT_FOUND';
      hint = /MANIFEST_UNKNOWN|NAME_UNKNOWN|manifest unknown/i.test(detail) || what.startsWith('manifest') ? 'manifest unknown: check the name and tag' : undefined;
    } else if (status === 429) {
      code = 'ERR_REGISTRY_RATE_LIMITED';
      hint = 'the registry rate-limits pulls; wait, or log in for a higher limit';
    } else if (status >= 500) {
      code = 'ERR_REGISTRY_UNAVAILABLE';
    } else {
      code = 'ERR_REGISTRY_PROTOCOL';
    }
    throw new ConveyorError(code, `${what}: ${name}: ${why}`, { hint, details: { status, registry: ref.registry } });
  }

  // ------------------------------------------------------------ the transport

  /**
   * One API request with auth, redirects and (unless retry is false) retries.
   * Returns the final response whatever its status; the caller checks it.
   */
  async request(ref: RepositoryRef, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    const retries = options.retry === false ? 0 : this.options.retries ?? 4;
    for (let attempt = 0; ; attempt++) {
      let res: IncomingMessage;
      try {
        res = await this.requestOnce(ref, path, options);
      } catch (error) {
        if (attempt < retries && isRetryableNetworkError(error) && !options.signal?.aborted) {
          const wait = this.backoff(attempt);
          this.options.onRetry?.(`${ref.registry}: ${(error as Error).message}; retrying in ${wait} ms`);
          await sleep(wait, options.signal);
          continue;
        }
        throw this.networkError(error, ref.registry);
      }
      const status = res.statusCode ?? 0;
      if (RETRY_STATUS.has(status) && attempt < retries) {
        drain(res);
        const wait = this.backoff(attempt, res.headers['retry-after']);
        this.options.onRetry?.(`${ref.registry}: HTTP ${status} for ${path}; retrying in ${wait} ms`);
        await sleep(wait, options.signal);
        continue;
      }
      return res;
    }
  }

  /** Exponential backoff with jitter; Retry-After (seconds or a date) wins, within the cap. */
  backoff(attempt: number, retryAfter?: string | string[]): number {
    const cap = this.options.maxRetryDelayMs ?? 10_000;
    const value = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
    if (value) {
      const seconds = Number(value);
      const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
      if (Number.isFinite(ms) && ms >= 0) return Math.min(cap, Math.ceil(ms));
    }
    const base = (this.options.retryDelayMs ?? 200) * 2 ** attempt;
    return Math.min(cap, Math.round(base * (0.75 + Math.random() * 0.5)));
  }

  private networkError(error: unknown, registry: string): ConveyorError {
    if (error instanceof ConveyorError) return error;
    const err = error as NodeJS.ErrnoException;
    if (err?.name === 'AbortError') return new ConveyorError('ERR_INTERNAL', `request to ${registry} aborted`, { cause: error });
    const host = registryApiHost(registry);
    if (isCertError(error)) {
      return new ConveyorError('ERR_REGISTRY_TLS', `cannot verify the TLS certificate of ${host}: ${err.message}`, {
        hint: `trust its CA with --ca-file or SSL_CERT_FILE (or /etc/docker/certs.d/${host}/ca.crt), or skip verification with --insecure`,
        cause: error,
      });
    }
    if (isNotTlsError(error) && err.code !== 'ECONNRESET') {
      return new ConveyorError('ERR_REGISTRY_TLS', `TLS handshake with ${host} failed: ${err.code}`, {
        hint: 'if the registry serves plain HTTP, use --plain-http (or --insecure)',
        cause: error,
      });
    }
    if (err?.code === 'ERR_CONVEYOR_SLOW') {
      return new ConveyorError('ERR_REGISTRY_UNAVAILABLE', `registry ${host} too slow: ${err.message}`, { hint: SLOW_HINT, cause: error });
    }
    if (err?.code === 'ENOTFOUND' || err?.code === 'EAI_AGAIN') {
      return new ConveyorError('ERR_REGISTRY_UNAVAILABLE', `cannot resolve registry host ${host}: ${err.code}`, { cause: error });
    }
    return new ConveyorError('ERR_REGISTRY_UNAVAILABLE', `cannot reach registry ${host}: ${err?.code ?? err?.message ?? String(error)}`, {
      hint: isLoopbackRegistry(registry) ? undefined : 'check the host name and your network; use --plain-http for a registry without TLS',
      cause: error,
    });
  }

  private state(registry: string): AuthState {
    let state = this.auth.get(registry);
    if (!state) {
      state = { tokens: new Map() };
      this.auth.set(registry, state);
    }
    return state;
  }

  private credentials(registry: string): Promise<Credentials | undefined> {
    const state = this.state(registry);
    state.credentials ??= this.options.credentials ? this.options.credentials(registry) : Promise.resolve(undefined);
    return state.credentials;
  }

  /** The Authorization header to send up front, once a registry's challenge is known. */
  private async authorization(ref: RepositoryRef, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const state = this.state(ref.registry);
    if (!state.challenge) return undefined;
    if (state.challenge.scheme === 'basic') {
      const creds = await this.credentials(ref.registry);
      return creds?.username !== undefined ? basic(creds.username, creds.password ?? '') : undefined;
    }
    if (state.challenge.scheme === 'bearer') {
      const cached = state.tokens.get(scope);
      if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
      const token = await this.fetchToken(ref, state.challenge, scope, signal);
      return `Bearer ${token}`;
    }
    return undefined;
  }

  private async fetchToken(ref: RepositoryRef, challenge: Challenge, scope: string, signal?: AbortSignal): Promise<string> {
    const state = this.state(ref.registry);
    const realm = challenge.params.realm;
    let url: URL;
    try {
      url = new URL(realm);
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('not http(s)');
    } catch {
      throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${ref.registry} sent a bearer challenge with an unusable realm ${JSON.stringify(realm)}`);
    }
    const known = await this.credentials(ref.registry);
    const withheld = known !== undefined && !this.mayCredentialRealm(ref.registry, url);
    // Withheld credentials mean an anonymous token request: public images still pull.
    const creds = withheld ? undefined : known;
    const headers: Record<string, string> = {};
    let body: string | undefined;
    let method: 'GET' | 'POST' = 'GET';
    if (creds?.identityToken) {
      // OAuth2 refresh-token grant, as docker does with identity tokens.
      method = 'POST';
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'conveyor', scope });
      if (challenge.params.service) form.set('service', challenge.params.service);
      body = form.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
      url.searchParams.append('scope', scope);
      if (creds?.username !== undefined) headers.authorization = basic(creds.username, creds.password ?? '');
    }
    let res: IncomingMessage | undefined;
    const retries = this.options.retries ?? 4;
    for (let attempt = 0; ; attempt++) {
      try {
        res = await this.send(url, method, headers, signal, body);
      } catch (error) {
        if (attempt < retries && isRetryableNetworkError(error)) {
          await sleep(this.backoff(attempt), signal);
          continue;
        }
        throw this.networkError(error, url.host);
      }
      if (RETRY_STATUS.has(res.statusCode ?? 0) && attempt < retries) {
        drain(res);
        await sleep(this.backoff(attempt, res.headers['retry-after']), signal);
        continue;
      }
      break;
    }
    const status = res.statusCode ?? 0;
    const text = (await readBody(res, 1024 * 1024, 'token response')).toString('utf8');
    if (status === 401 || status === 403) {
      if (withheld) {
        throw new ConveyorError('ERR_REGISTRY_UNAUTHORIZED', `the token server ${url.origin}${url.pathname} refused anonymous access for ${scope} (HTTP ${status}); the credentials for ${ref.registry} were not sent because ${ref.registry} names a token realm on plain HTTP`, {
          hint: `credentials go over plain HTTP only to an insecure registry: if ${ref.registry} and its network are trusted, use --insecure-registry ${ref.registry}`,
          details: { realm: `${url.origin}${url.pathname}` },
        });
      }
      throw new ConveyorError('ERR_REGISTRY_UNAUTHORIZED', `the token server ${url.origin}${url.pathname} refused ${creds ? `the credentials from ${creds.source}` : 'anonymous access'} for ${scope} (HTTP ${status})`, {
        hint: creds ? `check the credentials for ${ref.registry} in ${creds.source}` : `log in to ${ref.registry} (docker login writes ~/.docker/config.json, which img-fetch reads)`,
      });
    }
    if (status === 429) throw new ConveyorError('ERR_REGISTRY_RATE_LIMITED', `the token server ${url.host} rate-limits requests (HTTP 429)`);
    if (status !== 200) throw new ConveyorError(status >= 500 ? 'ERR_REGISTRY_UNAVAILABLE' : 'ERR_REGISTRY_PROTOCOL', `the token server ${url.host} answered HTTP ${status}`);
    const token = parseTokenResponse(text);
    if (!token) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `the token server ${url.host} sent no token`);
    state.tokens.set(scope, token);
    return token.token;
  }

  /**
   * Whether credentials (basic auth, an identity token) may go to this token
   * realm. The registry names the realm, so any host is accepted, as in
   * Docker's token auth; the scheme decides. HTTPS: yes. Plain HTTP: only for
   * a registry where plain HTTP is already the user's accepted risk, the ones
   * Docker calls insecure: `--insecure`, `--insecure-registry` (Docker's
   * insecure-registries), `--plain-http`, and loopback registries (Docker
   * lists 127.0.0.0/8 as insecure by default). An HTTPS registry elsewhere
   * that names an http:// realm would have the password cross the network in
   * clear, readable and replayable by anyone on the path: it gets an
   * anonymous token request instead.
   */
  private mayCredentialRealm(registry: string, realm: URL): boolean {
    if (realm.protocol === 'https:') return true;
    return Boolean(this.options.plainHttp) || this.isInsecure(registry) || isLoopbackRegistry(registry);
  }

  private async requestOnce(ref: RepositoryRef, path: string, options: RequestOptions): Promise<IncomingMessage> {
    const registry = ref.registry;
    const apiHost = registryApiHost(registry);
    const scope = repositoryScope(ref.repository);
    const method = options.method ?? 'GET';
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    const authorization = await this.authorization(ref, scope, options.signal);
    if (authorization) headers.authorization = authorization;
    let triedChallenge = false;
    let url = new URL(`${this.schemes.get(registry) ?? (this.options.plainHttp ? 'http' : 'https')}://${apiHost}${path}`);
    for (let redirects = 0; ; ) {
      // The registry is its host *and* scheme: a 401 from http:// after an
      // https:// registry redirected there must not win the credentials back.
      const known = this.schemes.get(registry);
      const onRegistry = url.host === apiHost && (known === undefined || url.protocol === `${known}:`);
      let res: IncomingMessage;
      if (onRegistry && !this.schemes.has(registry)) {
        res = await this.probe(registry, url, method, headers, options.signal);
        url = new URL(url.href.replace(/^https?:/, `${this.schemes.get(registry)}:`));
      } else {
        res = await this.send(url, method, headers, options.signal);
      }
      const status = res.statusCode ?? 0;
      if (status === 401 && onRegistry && !triedChallenge) {
        triedChallenge = true;
        const challenge = parseChallenge(firstHeader(res.headers['www-authenticate']));
        if (challenge && (challenge.scheme === 'bearer' || challenge.scheme === 'basic')) {
          const state = this.state(registry);
          state.challenge = challenge;
          state.tokens.delete(scope);
          const next = await this.authorization(ref, scope, options.signal);
          if (next && next !== headers.authorization) {
            drain(res);
            headers.authorization = next;
            continue;
          }
        }
        return res;
      }
      if (status >= 300 && status < 400 && status !== 304 && res.headers.location) {
        drain(res);
        if (++redirects > 10) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${registry}: too many redirects for ${path}`);
        const next = new URL(res.headers.location, url);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${registry} redirected to ${next.protocol} URL`);
        // Credentials are for the registry only, never for blob storage
        // elsewhere, and never in clear: an https → http hop on the same host
        // (default ports make https://h and http://h the same `host`) drops them too.
        if (next.host !== apiHost || (url.protocol === 'https:' && next.protocol === 'http:')) delete headers.authorization;
        url = next;
        continue;
      }
      return res;
    }
  }

  /** The first request to a registry: HTTPS, falling back to HTTP where that is allowed. */
  private async probe(registry: string, url: URL, method: string, headers: Record<string, string>, signal?: AbortSignal): Promise<IncomingMessage> {
    if (url.protocol === 'http:') {
      const res = await this.send(url, method, headers, signal);
      this.schemes.set(registry, 'http');
      return res;
    }
    try {
      const res = await this.send(url, method, headers, signal);
      this.schemes.set(registry, 'https');
      return res;
    } catch (error) {
      const mayFallBack = this.isInsecure(registry) || isLoopbackRegistry(registry);
      if (!mayFallBack || !isNotTlsError(error)) throw error;
      const plain = new URL(url.href.replace(/^https:/, 'http:'));
      const res = await this.send(plain, method, headers, signal);
      this.schemes.set(registry, 'http');
      return res;
    }
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

  /** Whether TLS verification is off for this registry or host (`--insecure`, `--insecure-registry`). */
  private isInsecure(host: string): boolean {
    return Boolean(this.options.insecure) || (this.options.insecureRegistries ?? []).some((r) => r === host || registryApiHost(r) === host);
  }

  /** One HTTP exchange; resolves with the response head. */
  private async send(url: URL, method: string, headers: Record<string, string>, signal?: AbortSignal, body?: string): Promise<IncomingMessage> {
    const https = url.protocol === 'https:';
    const allHeaders: Record<string, string> = { 'user-agent': this.options.userAgent ?? 'conveyor', ...headers };
    if (body !== undefined) allHeaders['content-length'] = String(Buffer.byteLength(body));
    let requestFn: typeof import('node:http').request;
    const extra: Record<string, unknown> = {};
    let secureContext: SecureContext | undefined;
    if (https) {
      this.httpsModule ??= await import('node:https');
      this.httpsAgent ??= new this.httpsModule.Agent({ keepAlive: true, maxSockets: 16 });
      requestFn = this.httpsModule.request as unknown as typeof import('node:http').request;
      extra.agent = this.httpsAgent;
      const insecure = this.isInsecure(url.host);
      extra.rejectUnauthorized = !insecure;
      if (!insecure) {
        secureContext = await this.tlsContext(url.host, this.systemCa.has(url.host));
        if (secureContext) extra.secureContext = secureContext;
      }
      extra.servername = url.hostname.startsWith('[') || /^\d+\.\d+\.\d+\.\d+$/.test(url.hostname) ? undefined : url.hostname;
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
      req.end(body);
    });
    if (!https || this.isInsecure(url.host) || secureContext) return attempt;
    return attempt.catch((error) => {
      if (!isCertError(error) || this.systemCa.has(url.host)) throw error;
      // Not signed by a built-in root: try the system bundle (locally added CAs).
      this.systemCa.add(url.host);
      return this.send(url, method, headers, signal, body);
    });
  }
}

async function readCa(readFile: typeof import('node:fs/promises').readFile, file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    throw new ConveyorError('ERR_REGISTRY_TLS', `cannot read CA file ${file}: ${(error as Error).message}`);
  }
}

/** An old registry may serve schema1 as application/json: look for `"schemaVersion": 1` near the top. */
function looksLikeSchema1(body: Buffer): boolean {
  return /"schemaVersion"\s*:\s*1\s*[,}]/.test(body.subarray(0, 4096).toString('utf8')) && !/"schemaVersion"\s*:\s*2/.test(body.subarray(0, 4096).toString('utf8'));
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
