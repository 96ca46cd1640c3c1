/**
 * img-login's work: the password from stdin (`--password-stdin`), the check
 * of the credentials against the registry (`GET /v2/` with them: Basic, or a
 * token from the registry's realm with no scope, as docker login does), and
 * storing them once they are accepted. Library code: the registry client,
 * streams and environment are passed in.
 *
 * On failure: credentials the registry or its token server refuses are
 * ERR_REGISTRY_UNAUTHORIZED and nothing is stored; an unreachable registry
 * is the client's error (ERR_REGISTRY_UNAVAILABLE, ERR_REGISTRY_TLS, ...);
 * an empty password is ERR_USAGE; a failed store is ERR_AUTH_HELPER.
 */
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { RegistryClient } from '@conveyor/registry/client';
import { responseError } from '@conveyor/registry/error-map';
import { drain } from '@conveyor/registry/transport';

/** A password on stdin is short; more than this is not one. */
const MAX_PASSWORD_BYTES = 64 * 1024;

/** Reads the password from `input` as docker does: all of it, one trailing newline (and CR) removed. */
export async function readPassword(input: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    total += buffer.length;
    if (total > MAX_PASSWORD_BYTES) throw new ConveyorError('ERR_USAGE', `the password on stdin is longer than ${MAX_PASSWORD_BYTES} bytes`);
    chunks.push(buffer);
  }
  const password = Buffer.concat(chunks).toString('utf8').replace(/\n$/, '').replace(/\r$/, '');
  if (password === '') throw new ConveyorError('ERR_USAGE', 'no password on stdin', { hint: 'echo "$TOKEN" | img-login -u USER --password-stdin REGISTRY' });
  return password;
}

/**
 * Checks the credentials the client was made with against `registry`:
 * resolves when `GET /v2/` answers 200 with them.
 */
export async function verifyLogin(client: RegistryClient, registry: string, username: string): Promise<void> {
  const ref = { registry, repository: '' };
  const refused = (why: string, cause?: unknown) =>
    new ConveyorError('ERR_REGISTRY_UNAUTHORIZED', `login to ${registry} as ${username} refused: ${why}`, {
      hint: 'check the user name and password (or token); nothing was stored',
      cause,
    });
  let res: Awaited<ReturnType<RegistryClient['request']>>;
  try {
    res = await client.request(ref, '/v2/', { scope: '' });
  } catch (error) {
    // The token server's refusal: said as a login failure, its own words kept.
    if (error instanceof ConveyorError && error.code === 'ERR_REGISTRY_UNAUTHORIZED') throw refused(error.message, error);
    throw error;
  }
  if (res.statusCode === 200) {
    drain(res);
    return;
  }
  if (res.statusCode === 401) {
    drain(res);
    throw refused('the registry answered HTTP 401');
  }
  await responseError(res, ref, `login to ${registry}`);
}
