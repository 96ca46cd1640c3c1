/**
 * The registry API calls (OCI distribution / Docker Registry HTTP API v2):
 * manifests by tag or digest (GET, HEAD), small blobs into memory, blob
 * downloads as streams. `RegistryClient` composes the parts, a file each:
 *
 *   request = retry.ts (429/5xx/resets, backoff, Retry-After)
 *     around one exchange: authorizer.ts (anonymous, then Basic or Bearer on
 *     a 401 challenge) → schemer.ts (https, or http where allowed, learnt on
 *     the first request) → transport.ts (TLS, timeouts, minimum rate; its
 *     redirect rule, followed here by hand, drops Authorization off the
 *     registry's host and on an https → http hop)
 *   failures → error-map.ts (status and Docker error body, or network error
 *     → a ConveyorError with a stable code)
 *
 * `request` also carries bodies (transport.ts's RequestBody: in memory, or
 * re-openable streams for blob uploads) and takes an absolute URL in place
 * of a path (an upload's Location, followed exactly, query string included);
 * Authorization goes only to the registry's own host and scheme, there as on
 * redirects. `responseUrl` is the URL a response finally came from, which a
 * relative Location resolves against. The upload side is upload.ts.
 *
 * Every call verifies what it can before returning: a manifest against the
 * digest asked for and Docker-Content-Digest (ERR_DIGEST_MISMATCH), its size
 * (MAX_MANIFEST_BYTES), schema1 refused (ERR_MANIFEST_UNSUPPORTED); a small
 * blob against its digest and size. On failure every call throws a
 * ConveyorError.
 */
import type { IncomingMessage } from 'node:http';
import { sha256, SHA256_DIGEST } from '@conveyor/lib-common/digest';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { isSchema1, MANIFEST_ACCEPT } from '@conveyor/lib-common/mediatypes';
import { registryApiHost } from '@conveyor/lib-common/reference';
import { repositoryScope } from './auth.js';
import { Authorizer } from './authorizer.js';
import type { Credentials } from './credentials.js';
import { networkError, responseError } from './error-map.js';
import { retryRequest, type RetryPolicy } from './retry.js';
import { Schemer, type Scheme } from './schemer.js';
import { drain, readBody, redirectTarget, Transport, type HttpResponse, type RequestBody, type TransportOptions } from './transport.js';

export { DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW_MS } from './transport.js';
export type { ReopenableBody, RequestBody } from './transport.js';

/** The URL each response came from (after redirects), for Location headers relative to it. */
const responseUrls = new WeakMap<HttpResponse, URL>();

/** The URL a response of `request` finally came from (after redirects); undefined for responses from elsewhere. */
export function responseUrl(res: HttpResponse): URL | undefined {
  return responseUrls.get(res);
}

export interface RegistryClientOptions extends TransportOptions, RetryPolicy {
  /** Talk plain HTTP to every registry. */
  plainHttp?: boolean;
  /** Finds credentials for a registry when it asks for them. */
  credentials?: (registry: string) => Promise<Credentials | undefined>;
  /** Told about each retry, for a warning on stderr. */
  onRetry?: (message: string) => void;
  /**
   * Blob bodies on a socket of our own read into one reused buffer
   * (raw-exchange.ts; default true), and so the pull's other bodiless
   * requests (manifest GETs and HEADs, configs, token GETs), which then load
   * no node:http; false reads them all through node:http like every other
   * answer (CONVEYOR_RAW_BLOBS=0, for a comparison or a registry the raw path
   * mishandles).
   */
  rawBlobs?: boolean;
}

export interface RepositoryRef {
  /** As in references: `docker.io`, `127.0.0.1:5000`. */
  registry: string;
  repository: string;
}

export interface RequestOptions {
  method?: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /**
   * The token scope to ask for on a Bearer challenge: default pull on the
   * repository (`repository:NAME:pull`); `repository:NAME:pull,push` to push,
   * `registry:catalog:*` for the catalog, '' for none (`GET /v2/` at login).
   */
  scope?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Retry 429/5xx/resets (default true); false makes one attempt. */
  retry?: boolean;
  /** The request body; sent again as it is on a retry, a redirect or an answered 401. */
  body?: RequestBody;
  /** A GET or HEAD (no body) whose answers are read off a socket of our own (RawResponse): a pull's requests. */
  raw?: boolean;
}

export interface ManifestResponse {
  body: Buffer;
  mediaType: string;
  digest: string;
}

/** Manifests and indexes are read into memory: capped as containerd caps them. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

export class RegistryClient {
  /** The retry policy of every request, and the backoff blob downloads wait by. */
  readonly retryPolicy: RetryPolicy;
  private readonly options: RegistryClientOptions;
  private readonly transport: Transport;
  private readonly schemer: Schemer;
  private readonly authorizer: Authorizer;

  constructor(options: RegistryClientOptions = {}) {
    this.options = options;
    this.retryPolicy = { retries: options.retries, retryDelayMs: options.retryDelayMs, maxRetryDelayMs: options.maxRetryDelayMs };
    this.transport = new Transport(options);
    this.schemer = new Schemer(this.transport, Boolean(options.plainHttp));
    this.authorizer = new Authorizer(this.transport, {
      credentials: options.credentials,
      rawTokenGets: options.rawBlobs !== false,
      acceptsPlainHttp: (registry) => this.schemer.acceptsPlainHttp(registry),
      retry: this.retryPolicy,
    });
  }

  /** Destroys the keep-alive agents (and raw-socket exchanges left open) so the process can exit. */
  close(): void {
    this.transport.close();
  }

  /** The scheme a registry was reached with (after a first request), for messages and tests. */
  schemeOf(registry: string): Scheme | undefined {
    return this.schemer.known(registry);
  }

  /** GETs a manifest or index by tag or digest, verified against the digest when one was asked for. */
  async getManifest(ref: RepositoryRef, reference: string, signal?: AbortSignal): Promise<ManifestResponse> {
    const what = `manifest ${ref.registry}/${ref.repository}${reference.includes(':') ? '@' : ':'}${reference}`;
    const res = await this.requestAny(ref, `/v2/${ref.repository}/manifests/${reference}`, { headers: { accept: MANIFEST_ACCEPT }, signal, raw: this.raw });
    if (res.statusCode !== 200) await responseError(res, ref, what);
    const body = await readBody(res, MAX_MANIFEST_BYTES, what);
    const digest = sha256(body);
    const contentType = (res.headers['content-type'] ?? '').split(';')[0].trim();
    // schema1's digest covers the payload without its signatures, so it cannot be
    // verified like the others; it is refused before that.
    if (isSchema1(contentType) || isSchema1(undefined, parseJson(body))) {
      // Loaded on this failure only: a HEAD-only re-pull never needs manifest.js.
      const { schema1Error } = await import('./manifest.js');
      throw schema1Error(what, { mediaType: contentType });
    }
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `${what}: the registry sent content with digest ${digest}`, {
        hint: 'the registry is broken or lying; nothing was stored',
      });
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
    const res = await this.requestAny(ref, `/v2/${ref.repository}/manifests/${reference}`, {
      method: 'HEAD',
      headers: { accept: MANIFEST_ACCEPT },
      signal,
      raw: this.raw,
    });
    if (res.statusCode === 405 || res.statusCode === 400) {
      drain(res);
      return undefined;
    }
    if (res.statusCode !== 200) await responseError(res, ref, what);
    drain(res);
    const digest = res.headers['docker-content-digest'];
    if (typeof digest !== 'string' || !SHA256_DIGEST.test(digest)) return undefined;
    const size = Number(res.headers['content-length']);
    return { digest, mediaType: (res.headers['content-type'] ?? '').split(';')[0].trim(), size: Number.isFinite(size) ? size : undefined };
  }

  /** GETs a small blob (a config) into memory and verifies it. */
  async getSmallBlob(ref: RepositoryRef, digest: string, size: number, max: number, signal?: AbortSignal): Promise<Buffer> {
    const what = `blob ${digest}`;
    if (size > max) throw new ConveyorError('ERR_MANIFEST_INVALID', `${what} is declared as ${size} bytes, more than the ${max} accepted`);
    const res = await this.requestAny(ref, `/v2/${ref.repository}/blobs/${digest}`, { signal, raw: this.raw });
    if (res.statusCode !== 200) await responseError(res, ref, what);
    const body = await readBody(res, max, what);
    const actual = sha256(body);
    if (actual !== digest) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `${what} from ${ref.registry}: the content has digest ${actual}`, {
        hint: 'the registry is broken or lying; nothing was stored',
      });
    }
    if (body.length !== size) throw new ConveyorError('ERR_SIZE_MISMATCH', `${what}: ${body.length} bytes, the manifest says ${size}`);
    return body;
  }

  /**
   * Starts a blob download (optionally from `offset` with a Range request) and
   * returns the response: 200, 206, or 416 (drained) when the registry refuses
   * the range. Getting the response head is retried like any request; a body
   * that breaks off is the caller's to resume from what it has (blob.ts).
   * Unless `rawBlobs` is false the answers come off a socket of our own
   * (a RawResponse: its body read with `consume`), registry and blob host
   * alike, as do getManifest's, headManifest's and getSmallBlob's.
   */
  async openBlob(ref: RepositoryRef, digest: string, offset: number, signal?: AbortSignal): Promise<HttpResponse> {
    const headers: Record<string, string> = {};
    if (offset > 0) headers.range = `bytes=${offset}-`;
    const res = await this.requestAny(ref, `/v2/${ref.repository}/blobs/${digest}`, { headers, signal, raw: this.raw });
    if (res.statusCode === 200 || res.statusCode === 206) return res;
    if (res.statusCode === 416) {
      drain(res);
      return res;
    }
    return responseError(res, ref, `blob ${digest}`);
  }

  /**
   * One API request with auth, redirects and (unless retry is false) retries.
   * `path` is a path on the registry (`/v2/...`) or an absolute http(s) URL
   * (an upload Location), which gets Authorization only when it is on the
   * registry's host and scheme. Returns the final response whatever its
   * status; the caller checks it.
   */
  async request(ref: RepositoryRef, path: string, options: RequestOptions = {}): Promise<IncomingMessage> {
    // Without `raw` every answer is node:http's.
    return (await this.requestAny(ref, path, { ...options, raw: false })) as IncomingMessage;
  }

  /** Whether a pull's bodiless requests go over raw-exchange.ts (rawBlobs, default true). */
  private get raw(): boolean {
    return this.options.rawBlobs !== false;
  }

  /** `request`, with raw-socket answers where `options.raw` asks for them (a GET or HEAD without a body). */
  private async requestAny(ref: RepositoryRef, path: string, options: RequestOptions): Promise<HttpResponse> {
    const policy = options.retry === false ? { ...this.retryPolicy, retries: 0 } : this.retryPolicy;
    return retryRequest(() => this.exchange(ref, path, options), policy, {
      signal: options.signal,
      onRetry: this.options.onRetry,
      describe: ({ error, status }, wait) =>
        error !== undefined
          ? `${ref.registry}: ${(error as Error).message}; retrying in ${wait} ms`
          : `${ref.registry}: HTTP ${status} for ${path}; retrying in ${wait} ms`,
      fail: (error) => networkError(error, ref.registry),
    });
  }

  /** One attempt: the authorized request, a 401 challenge answered once, redirects followed. */
  private async exchange(ref: RepositoryRef, path: string, options: RequestOptions): Promise<HttpResponse> {
    const registry = ref.registry;
    const apiHost = registryApiHost(registry);
    const scope = options.scope ?? repositoryScope(ref.repository);
    const method = options.method ?? 'GET';
    const headers: Record<string, string> = { ...(options.headers ?? {}) };
    const authorization = await this.authorizer.authorization(ref, scope, options.signal);
    if (authorization) headers.authorization = authorization;
    let triedChallenge = false;
    const absolute = /^https?:\/\//i.test(path);
    let url = absolute ? new URL(path) : new URL(`${this.schemer.first(registry)}://${apiHost}${path}`);
    if (options.body !== undefined && this.schemer.known(registry) === undefined) {
      // The probe sends no body: learn the scheme with a bodiless GET /v2/ first.
      const v2 = new URL(`${this.schemer.first(registry)}://${apiHost}/v2/`);
      drain(await this.schemer.probe(registry, v2, (url) => this.transport.send(url, 'GET', {}, options.signal)));
      if (!absolute) url = new URL(`${this.schemer.known(registry)}://${apiHost}${path}`);
    }
    for (let hops = 0; ; ) {
      // The registry is its host *and* scheme: a 401 from http:// after an
      // https:// registry redirected there must not win the credentials back.
      const known = this.schemer.known(registry);
      const onRegistry = url.host === apiHost && (known === undefined || url.protocol === `${known}:`);
      // An absolute URL elsewhere (a Location off the registry) never gets the credentials.
      if (!onRegistry) delete headers.authorization;
      const send = (to: URL): Promise<HttpResponse> =>
        options.raw && (method === 'GET' || method === 'HEAD') && options.body === undefined
          ? this.transport.sendRaw(to, headers, options.signal, method)
          : this.transport.send(to, method, headers, options.signal, options.body);
      let res: HttpResponse;
      if (onRegistry && known === undefined) {
        res = await this.schemer.probe(registry, url, send);
        url = new URL(url.href.replace(/^https?:/, `${this.schemer.known(registry)}:`));
      } else {
        res = await send(url);
      }
      responseUrls.set(res, url);
      if (res.statusCode === 401 && onRegistry && !triedChallenge) {
        triedChallenge = true;
        const next = await this.authorizer.answer(ref, scope, res, headers.authorization, options.signal);
        if (next === undefined) return res;
        drain(res);
        headers.authorization = next;
        continue;
      }
      const hop = redirectTarget(res, url, apiHost, hops, registry, path);
      if (!hop) return res;
      hops++;
      if (!hop.keepAuthorization) delete headers.authorization;
      url = hop.url;
    }
  }
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    // Not JSON: not schema1 either; parseManifest reports it.
    return undefined;
  }
}
