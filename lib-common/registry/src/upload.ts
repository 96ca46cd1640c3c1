/**
 * The upload side of the distribution API, one blob or manifest at a time:
 *
 *   blobExists      HEAD /v2/NAME/blobs/DIGEST (a blob the registry has is skipped)
 *   pushBlob        exists? → cross-repository mount (POST .../uploads/?mount=D&from=R,
 *                   201) → else an upload session (POST .../uploads/, 202 + Location):
 *                   one monolithic PUT for a blob up to the chunk size, PATCHes of
 *                   `chunkSize` bytes with Content-Range for a larger one, then the
 *                   closing PUT ?digest=D; Locations (relative or absolute, with their
 *                   `_state` query) followed exactly as the registry sends them
 *   putManifest     PUT /v2/NAME/manifests/REF with its media type, the registry's
 *                   Docker-Content-Digest checked against the bytes sent
 *
 * A transfer that breaks (reset, timeout, 5xx, 416) is resumed within the
 * client's retry policy: GET on the upload URL tells how far the registry
 * got (204 + `Range: 0-N`), the next PATCH starts at N+1; an upload the
 * registry forgot (404) starts over in a new session. Body requests are sent
 * once each (retry: false) and retried here, because resending a PATCH blindly
 * could append bytes twice.
 *
 * On failure every function throws a ConveyorError: the registry's refusal
 * mapped by error-map.ts (401/403 with a push hint), ERR_REGISTRY_PROTOCOL for
 * an answer the API does not allow (no Location, a Range beyond what was sent),
 * ERR_DIGEST_MISMATCH when the registry stored other bytes than we sent,
 * ERR_REGISTRY_UNAVAILABLE once the retries run out.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { sha256 } from '@conveyor/lib-common/digest';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Descriptor } from '@conveyor/lib-common/records';
import { repositoryScope } from './auth.js';
import { responseUrl, type RegistryClient, type RepositoryRef } from './client.js';
import { responseError } from './error-map.js';
import { backoffDelay, isRetryableNetworkError, retry, RETRY_STATUS } from './retry.js';
import { drain, firstHeader, type ReopenableBody } from './transport.js';

/** Blobs up to this size go up in one PUT; larger ones in PATCHes of this size (--chunk-size). */
export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;

/** A blob to push: its descriptor and a way to read it from any offset (a store file). */
export interface BlobSource {
  descriptor: Descriptor;
  /** Opens the bytes from `start` (inclusive) to `end` (exclusive). */
  open(start: number, end: number): Readable;
}

export interface PushBlobOptions {
  /** Largest single PUT, and the PATCH size above it (default DEFAULT_CHUNK_SIZE; raised to the registry's OCI-Chunk-Min-Length). */
  chunkSize?: number;
  /** Repositories of the same registry that may hold the blob: a mount is tried from each, in order. */
  mountFrom?: string[];
  signal?: AbortSignal;
  /** Bytes the registry holds or is being sent, of the blob's size. */
  onProgress?: (current: number) => void;
  /** Told before each resume, for a message on stderr. */
  onRetry?: (message: string) => void;
}

/** What pushBlob did: nothing (the registry had it), a mount, or an upload. */
export type PushBlobResult = 'exists' | 'mounted' | 'uploaded';

/** The scope a push needs: pull and push on the repository (and pull where a mount reads from). */
export function pushScope(repository: string, from?: string): string {
  const scope = repositoryScope(repository, 'pull,push');
  return from === undefined ? scope : `${scope} ${repositoryScope(from, 'pull')}`;
}

/** Whether the registry has the blob in this repository (HEAD; a size it reports must match). */
export async function blobExists(client: RegistryClient, repo: RepositoryRef, descriptor: Descriptor, signal?: AbortSignal): Promise<boolean> {
  const res = await client.request(repo, `/v2/${repo.repository}/blobs/${descriptor.digest}`, { method: 'HEAD', scope: pushScope(repo.repository), signal });
  drain(res);
  if (res.statusCode === 404) return false;
  if (res.statusCode !== 200) await pushError(res, repo, `blob ${descriptor.digest}`);
  const length = Number(firstHeader(res.headers['content-length']) ?? descriptor.size);
  // A registry holding other bytes under this digest cannot be fixed by a push; say so rather than skip.
  if (length !== descriptor.size) {
    throw new ConveyorError(
      'ERR_SIZE_MISMATCH',
      `blob ${descriptor.digest} in ${repo.registry}/${repo.repository} is ${length} bytes, the image says ${descriptor.size}`,
    );
  }
  return true;
}

/** Pushes one blob unless the registry has it; mounts it from another repository when it can. */
export async function pushBlob(client: RegistryClient, repo: RepositoryRef, source: BlobSource, options: PushBlobOptions = {}): Promise<PushBlobResult> {
  const { descriptor } = source;
  if (await blobExists(client, repo, descriptor, options.signal)) {
    options.onProgress?.(descriptor.size);
    return 'exists';
  }
  let session: UploadSession | undefined;
  for (const from of options.mountFrom ?? []) {
    if (from === repo.repository) continue;
    const mount = await tryMount(client, repo, descriptor.digest, from, options.signal);
    if (mount === 'mounted') {
      options.onProgress?.(descriptor.size);
      return 'mounted';
    }
    // A 202 is an upload session already open: use it rather than open another.
    if (mount) {
      session = mount;
      break;
    }
  }
  await upload(client, repo, source, session, options);
  return 'uploaded';
}

interface UploadSession {
  location: URL;
  /** The registry's least chunk size (OCI-Chunk-Min-Length), 0 when it names none. */
  minChunk: number;
}

/** POST with ?mount: 'mounted' on 201, the upload session it opened instead on 202, undefined when refused. */
async function tryMount(
  client: RegistryClient,
  repo: RepositoryRef,
  digest: string,
  from: string,
  signal?: AbortSignal,
): Promise<'mounted' | UploadSession | undefined> {
  const query = new URLSearchParams({ mount: digest, from });
  const res = await client.request(repo, `/v2/${repo.repository}/blobs/uploads/?${query}`, { method: 'POST', scope: pushScope(repo.repository, from), signal });
  drain(res);
  if (res.statusCode === 201) return 'mounted';
  if (res.statusCode === 202) return sessionOf(res, repo);
  // Not allowed to read `from` (or mounts unsupported): a plain upload still works.
  return undefined;
}

/** Opens an upload session: POST .../blobs/uploads/ → 202 with its Location. */
async function startSession(client: RegistryClient, repo: RepositoryRef, signal?: AbortSignal): Promise<UploadSession> {
  const res = await client.request(repo, `/v2/${repo.repository}/blobs/uploads/`, { method: 'POST', scope: pushScope(repo.repository), signal });
  if (res.statusCode !== 202) await pushError(res, repo, `starting an upload to ${repo.repository}`);
  drain(res);
  return sessionOf(res, repo);
}

function sessionOf(res: IncomingMessage, repo: RepositoryRef): UploadSession {
  const minChunk = Number(firstHeader(res.headers['oci-chunk-min-length']));
  return { location: nextLocation(res, repo), minChunk: Number.isSafeInteger(minChunk) && minChunk > 0 ? minChunk : 0 };
}

/** The Location an upload answer sends us on to, resolved against the URL it came from. */
export function nextLocation(res: IncomingMessage, repo: RepositoryRef): URL {
  const location = firstHeader(res.headers.location);
  const base = responseUrl(res);
  if (!location || !base) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${repo.registry}: an upload answer (HTTP ${res.statusCode}) without a Location`);
  let url: URL;
  try {
    url = new URL(location, base);
  } catch {
    throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${repo.registry}: an upload Location that is not a URL: ${JSON.stringify(location.slice(0, 200))}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${repo.registry}: an upload Location with scheme ${url.protocol}`);
  }
  return url;
}

/**
 * The end of a `Range: 0-N` header (N, inclusive), -1 for `0-0` on an empty
 * session as some registries send it, undefined when absent or malformed.
 */
export function rangeEnd(header: string | undefined): number | undefined {
  const match = header === undefined ? null : /^(?:bytes=)?0-(\d+)$/.exec(header.trim());
  if (!match) return undefined;
  const end = Number(match[1]);
  return Number.isSafeInteger(end) ? end : undefined;
}

/**
 * The location with `digest` added to its query, as the closing PUT needs it.
 * Appended to the query as the registry wrote it: re-serialising it could
 * re-encode an opaque `_state` token.
 */
export function withDigest(location: URL, digest: string): URL {
  const url = new URL(location.href);
  if (url.searchParams.has('digest')) {
    url.searchParams.set('digest', digest);
    return url;
  }
  url.search = `${url.search ? `${url.search}&` : '?'}digest=${encodeURIComponent(digest)}`;
  return url;
}

/** A failure worth resuming after: a dropped connection, a 5xx/429, or a Range the registry disputes (416). */
class Interrupted extends Error {
  constructor(
    message: string,
    readonly wait?: number,
  ) {
    super(message);
  }
}

/** A dropped connection (as the client reports it: a ConveyorError caused by the network error) or an Interrupted; undefined otherwise. */
function asInterrupted(error: unknown): Interrupted | undefined {
  if (error instanceof Interrupted) return error;
  const cause = error instanceof ConveyorError ? error.cause : error;
  return isRetryableNetworkError(cause) ? new Interrupted((cause as Error).message) : undefined;
}

/** Sends the blob through a session (a new one when none is given), resuming where the registry says it stopped. */
async function upload(
  client: RegistryClient,
  repo: RepositoryRef,
  source: BlobSource,
  given: UploadSession | undefined,
  options: PushBlobOptions,
): Promise<void> {
  const { descriptor } = source;
  const retries = client.retryPolicy.retries ?? 4;
  let session = given;
  let offset = 0;
  await retry<void>(
    async (n) => {
      try {
        if (!session) {
          session = await startSession(client, repo, options.signal);
          offset = 0;
        }
        const chunk = Math.max(options.chunkSize ?? DEFAULT_CHUNK_SIZE, session.minChunk, 1);
        if (offset === 0 && descriptor.size <= chunk) {
          await send(client, repo, session, source, 0, descriptor.size, true, options);
          return { done: undefined };
        }
        while (offset < descriptor.size) {
          const end = Math.min(offset + chunk, descriptor.size);
          const held = await send(client, repo, session, source, offset, end, false, options);
          // A registry that keeps none of a chunk would have us send it for ever.
          if (held <= offset)
            throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${repo.registry} kept none of bytes ${offset}-${end - 1} of ${descriptor.digest}`);
          offset = held;
        }
        await send(client, repo, session, source, offset, offset, true, options);
        return { done: undefined };
      } catch (error) {
        const interrupted = asInterrupted(error);
        if (!interrupted || n >= retries || options.signal?.aborted) {
          if (interrupted)
            throw new ConveyorError(
              'ERR_REGISTRY_UNAVAILABLE',
              `uploading ${descriptor.digest} to ${repo.registry}/${repo.repository}: ${interrupted.message}`,
              {
                cause: error,
              },
            );
          throw error;
        }
        const wait = interrupted.wait ?? backoffDelay(client.retryPolicy, n);
        // Where did the registry get to? Its answer decides where the next attempt starts.
        const status = session ? await uploadStatus(client, repo, session, options.signal) : undefined;
        if (status === undefined) {
          session = undefined;
          offset = 0;
        } else {
          session = status.session;
          offset = status.offset;
        }
        options.onProgress?.(offset);
        const where = session ? `from byte ${offset}` : 'in a new upload session';
        return {
          again: true,
          wait,
          message: `${repo.registry}: upload of ${descriptor.digest} broke off (${interrupted.message}); resuming ${where} in ${wait} ms`,
        };
      }
    },
    { signal: options.signal, onRetry: options.onRetry },
  );
}

/**
 * One body request of an upload: bytes [start, end) as a PATCH, or with
 * `close` as the PUT ?digest= that ends the session (the whole blob when
 * start is 0, nothing when start equals end). Returns the offset the
 * registry now holds; throws Interrupted for what a resume may fix.
 */
async function send(
  client: RegistryClient,
  repo: RepositoryRef,
  session: UploadSession,
  source: BlobSource,
  start: number,
  end: number,
  close: boolean,
  options: PushBlobOptions,
): Promise<number> {
  const { digest } = source.descriptor;
  const length = end - start;
  const body: ReopenableBody = {
    length,
    open: () => {
      const stream = source.open(start, end);
      let sent = start;
      stream.on('data', (chunk: Buffer) => {
        sent += chunk.length;
        options.onProgress?.(sent);
      });
      return stream;
    },
  };
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' };
  // A PATCH says where its bytes go, so a registry that lost some refuses it (416) rather than misplace them.
  if (!close) headers['content-range'] = `${start}-${end - 1}`;
  const url = close ? withDigest(session.location, digest) : session.location;
  const res = await client.request(repo, url.href, {
    method: close ? 'PUT' : 'PATCH',
    headers,
    body: length > 0 ? body : '',
    scope: pushScope(repo.repository),
    signal: options.signal,
    retry: false,
  });
  const status = res.statusCode ?? 0;
  if (RETRY_STATUS.has(status) || status === 416) {
    drain(res);
    // 416: the registry disputes our offset; ask it at once. Otherwise its Retry-After, else the loop's backoff.
    const retryAfter = res.headers['retry-after'];
    throw new Interrupted(`HTTP ${status}`, status === 416 ? 0 : retryAfter ? backoffDelay(client.retryPolicy, 0, retryAfter) : undefined);
  }
  const what = `${close ? 'closing the upload of' : 'uploading'} blob ${digest}`;
  if (close) {
    if (status !== 201) await pushError(res, repo, what);
    drain(res);
    const stored = firstHeader(res.headers['docker-content-digest']);
    if (stored !== undefined && stored !== digest) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `${repo.registry} stored blob ${digest} as ${stored}`, { hint: 'the registry is broken or lying' });
    }
    return end;
  }
  if (status !== 202) await pushError(res, repo, what);
  drain(res);
  session.location = nextLocation(res, repo);
  const held = rangeEnd(firstHeader(res.headers.range));
  // No Range: the registry took the chunk (distribution always sends one; others may not).
  if (held === undefined) return end;
  if (held + 1 > end) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${repo.registry} claims ${held + 1} bytes of ${digest} after only ${end} were sent`);
  return held + 1;
}

/** GET on the upload URL: how many bytes the registry holds (204 + Range), or undefined when it forgot the session. */
async function uploadStatus(
  client: RegistryClient,
  repo: RepositoryRef,
  session: UploadSession,
  signal?: AbortSignal,
): Promise<{ session: UploadSession; offset: number } | undefined> {
  let res: IncomingMessage;
  try {
    res = await client.request(repo, session.location.href, { scope: pushScope(repo.repository), signal });
  } catch {
    // Cannot even ask: start over (the next attempt reports its own failure).
    return undefined;
  }
  drain(res);
  if (res.statusCode !== 204 && res.statusCode !== 200) return undefined;
  const held = rangeEnd(firstHeader(res.headers.range));
  const location = firstHeader(res.headers.location) ? nextLocation(res, repo) : session.location;
  // `0-0` is what distribution says for an empty upload too (its Range end is
  // offset-1, floored at 0): read as nothing held, so the first byte is never skipped.
  return { session: { ...session, location }, offset: held === undefined || held === 0 ? 0 : held + 1 };
}

/** A manifest or index to put under a tag or its digest. */
export interface ManifestUpload {
  mediaType: string;
  body: Buffer;
}

/** PUTs a manifest or index; returns its digest, checked against the registry's Docker-Content-Digest. */
export async function putManifest(
  client: RegistryClient,
  repo: RepositoryRef,
  reference: string,
  manifest: ManifestUpload,
  signal?: AbortSignal,
): Promise<string> {
  const digest = sha256(manifest.body);
  const what = `manifest ${repo.registry}/${repo.repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
  if (reference.startsWith('sha256:') && reference !== digest) {
    throw new ConveyorError('ERR_DIGEST_MISMATCH', `${what}: the manifest to push has digest ${digest}`);
  }
  // Idempotent (the same bytes under the same name), so retried like any request.
  const res = await client.request(repo, `/v2/${repo.repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { 'content-type': manifest.mediaType },
    body: manifest.body,
    scope: pushScope(repo.repository),
    signal,
  });
  if (res.statusCode !== 201 && res.statusCode !== 200) await pushError(res, repo, what);
  drain(res);
  const stored = firstHeader(res.headers['docker-content-digest']);
  if (stored !== undefined && stored !== digest) {
    throw new ConveyorError('ERR_DIGEST_MISMATCH', `${what}: the registry says it stored ${stored}, the bytes sent are ${digest}`, {
      hint: 'the registry rewrote the manifest; pull it by tag to see what it holds',
    });
  }
  return digest;
}

/** responseError with push's hints for 401 and 403 (error-map.ts speaks of pulling). */
async function pushError(res: IncomingMessage, repo: RepositoryRef, what: string): Promise<never> {
  try {
    return await responseError(res, repo, what);
  } catch (error) {
    if (error instanceof ConveyorError && (error.code === 'ERR_REGISTRY_DENIED' || error.code === 'ERR_REGISTRY_UNAUTHORIZED')) {
      const hint =
        error.code === 'ERR_REGISTRY_DENIED'
          ? `your credentials for ${repo.registry} do not allow pushing to ${repo.repository}`
          : `log in to ${repo.registry} with an account that may push (img-login, or docker login; DOCKER_CONFIG picks another directory)`;
      throw new ConveyorError(error.code, error.message, { hint, details: error.details, cause: error });
    }
    throw error;
  }
}
