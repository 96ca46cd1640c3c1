/**
 * ADD of a URL (http:// or https://): fetched with node's http/https, as
 * Docker's ADD does (moby builder/dockerfile/copy.go downloadSource):
 * redirects followed up to a cap, the body capped in size (Content-Length
 * checked first, then the bytes counted), a stalled connection timed out,
 * `--checksum=sha256:…` verified (ERR_DIGEST_MISMATCH), the file name from
 * the URL's last path segment (or Content-Disposition), mtime from
 * Last-Modified. The body is streamed to a sink and hashed on the way; the
 * caller writes it (mode 0600) and never extracts it (Docker's rule: a
 * fetched archive stays a file).
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { posix } from 'node:path';
import type { Writable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';

export interface FetchLimits {
  maxBytes: number;
  maxRedirects: number;
  /** Milliseconds without a byte before the fetch fails. */
  idleTimeoutMs: number;
}

export const DEFAULT_FETCH_LIMITS: FetchLimits = { maxBytes: 4 * 1024 ** 3, maxRedirects: 10, idleTimeoutMs: 60_000 };

export interface Fetched {
  /** sha256:… of the body. */
  digest: string;
  size: number;
  /** The file name Docker would give it in a destination directory ('' when the URL names none). */
  name: string;
  lastModified?: Date;
}

export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

function fetchError(url: string, what: string, hint?: string): ConveyorError {
  return new ConveyorError('ERR_BUILD_FETCH', `ADD ${url}: ${what}`, { hint, details: { url } });
}

/** The name moby's getFilenameForDownload picks: the URL path's base name, else Content-Disposition's filename. */
function fileNameFor(url: URL, response: IncomingMessage): string {
  let base = '';
  try {
    base = posix.basename(decodeURIComponent(url.pathname));
  } catch {
    base = posix.basename(url.pathname);
  }
  if (!base || base === '/' || base === '.' || base === '..') {
    const disposition = response.headers['content-disposition'] ?? '';
    const match = /filename="?([^";]+)"?/i.exec(disposition);
    base = match ? posix.basename(match[1]) : '';
  }
  return base === '.' || base === '..' || base.includes('\0') ? '' : base;
}

function get(url: URL, timeoutMs: number): Promise<IncomingMessage> {
  return (async () => {
    const transport = url.protocol === 'https:' ? await import('node:https') : await import('node:http');
    return new Promise<IncomingMessage>((resolve, reject) => {
      const request = transport.get(url, { headers: { 'user-agent': 'conveyor-img-build' } }, resolve);
      request.setTimeout(timeoutMs, () => request.destroy(new Error(`no response in ${timeoutMs} ms`)));
      request.on('error', reject);
    });
  })();
}

/**
 * Fetches `source` into `sink` (or only hashes it when sink is undefined).
 * The original URL's name is kept whatever the redirects say.
 */
export async function fetchUrl(
  source: string,
  sink: Writable | undefined,
  options: { checksum?: string; limits?: Partial<FetchLimits> } = {},
): Promise<Fetched> {
  const limits = { ...DEFAULT_FETCH_LIMITS, ...options.limits };
  const original = new URL(source);
  let url = original;
  let response: IncomingMessage | undefined;
  for (let redirects = 0; ; redirects++) {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw fetchError(source, `${url.protocol} is not http or https`);
    try {
      response = await get(url, limits.idleTimeoutMs);
    } catch (error) {
      throw fetchError(source, (error as Error).message);
    }
    const status = response.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status)) {
      response.resume();
      const location = response.headers.location;
      if (!location) throw fetchError(source, `redirect ${status} without a Location`);
      if (redirects + 1 > limits.maxRedirects) throw fetchError(source, `more than ${limits.maxRedirects} redirects`);
      url = new URL(location, url);
      continue;
    }
    if (status !== 200) {
      response.resume();
      throw fetchError(source, `HTTP ${status} ${response.statusMessage ?? ''}`.trim());
    }
    break;
  }
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBytes) {
    response.destroy();
    throw fetchError(source, `${declared} bytes, more than the ${limits.maxBytes} bytes allowed`);
  }
  const hash = createHash('sha256');
  let size = 0;
  const body = response;
  body.setTimeout(limits.idleTimeoutMs, () => body.destroy(new Error(`no data for ${limits.idleTimeoutMs} ms`)));
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limits.maxBytes) throw fetchError(source, `more than the ${limits.maxBytes} bytes allowed`);
      hash.update(chunk);
      if (sink && !sink.write(chunk)) await new Promise((resolve) => sink.once('drain', resolve));
    }
  } catch (error) {
    body.destroy();
    if (error instanceof ConveyorError) throw error;
    throw fetchError(source, (error as Error).message);
  }
  if (sink) await new Promise<void>((resolve, reject) => sink.end((error?: Error | null) => (error ? reject(error) : resolve())));
  const digest = `sha256:${hash.digest('hex')}`;
  if (options.checksum !== undefined && options.checksum !== digest) {
    throw new ConveyorError('ERR_DIGEST_MISMATCH', `ADD ${source}: --checksum=${options.checksum} but the content is ${digest}`, { details: { url: source } });
  }
  const modified = response.headers['last-modified'];
  const lastModified = modified ? new Date(modified) : undefined;
  return {
    digest,
    size,
    name: fileNameFor(original, response),
    lastModified: lastModified && !Number.isNaN(lastModified.getTime()) ? lastModified : undefined,
  };
}
