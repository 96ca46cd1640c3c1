/**
 * Error mapping: a registry's failed answer (its HTTP status and Docker error
 * body, `{"errors":[{"code","message"}]}`) or a network failure (Node's
 * error codes) becomes a ConveyorError with a stable code and a hint, so
 * every caller reports the same failure the same way:
 *
 *   401 → ERR_REGISTRY_UNAUTHORIZED, 403 → ERR_REGISTRY_DENIED,
 *   404 → ERR_REGISTRY_NOT_FOUND, 429 → ERR_REGISTRY_RATE_LIMITED,
 *   5xx → ERR_REGISTRY_UNAVAILABLE, anything else → ERR_REGISTRY_PROTOCOL;
 *   a certificate or TLS handshake failure → ERR_REGISTRY_TLS; a reset,
 *   timeout, too-slow transfer or unknown host → ERR_REGISTRY_UNAVAILABLE.
 *
 * These functions are the failure path themselves: `responseError` always
 * throws, `networkError` returns the error to throw.
 */
import { ConveyorError, type ErrorCode } from '@conveyor/lib-common/errors';
import { isLoopbackRegistry, registryApiHost } from '@conveyor/lib-common/reference';
import type { RepositoryRef } from './client.js';
import { isCertError, isNotTlsError, readBody, SLOW_HINT, type HttpResponse } from './transport.js';

/** Throws the stable error for a failed response (reads a bounded error body for the message). */
export async function responseError(res: HttpResponse, ref: RepositoryRef, what: string): Promise<never> {
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
    hint =
      /MANIFEST_UNKNOWN|NAME_UNKNOWN|manifest unknown/i.test(detail) || what.startsWith('manifest') ? 'manifest unknown: check the name and tag' : undefined;
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

/** The ConveyorError for a request to `registry` (a reference's registry, or a token realm's host) that failed below HTTP. */
export function networkError(error: unknown, registry: string): ConveyorError {
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
