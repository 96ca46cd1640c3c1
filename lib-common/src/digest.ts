import { createHash } from 'node:crypto';
import { ConveyorError } from './errors.js';

/** A sha256 digest, `sha256:` and 64 lowercase hex digits: the one pattern for digests (no g/y flag, so `.test` keeps no state). */
export const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
/** 64 lowercase hex digits: a digest's hex part, and ids made of one (chain-ID directories, container ids). */
export const SHA256_HEX = /^[a-f0-9]{64}$/;

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** Throws unless `digest` is a well-formed sha256 digest; the only algorithm the store accepts. */
export function assertDigest(digest: unknown, what = 'digest'): asserts digest is string {
  if (typeof digest !== 'string' || !SHA256_DIGEST.test(digest)) {
    throw new ConveyorError('ERR_INPUT_RECORD', `${what}: not a sha256 digest: ${JSON.stringify(digest)}`);
  }
}

export function digestHex(digest: string): string {
  assertDigest(digest);
  return digest.slice('sha256:'.length);
}

/** OCI chain IDs: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)). */
export function chainIDs(diffIDs: string[]): string[] {
  const chain: string[] = [];
  for (const diffID of diffIDs) {
    chain.push(chain.length === 0 ? diffID : sha256(`${chain[chain.length - 1]} ${diffID}`));
  }
  return chain;
}
