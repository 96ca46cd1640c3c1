/**
 * sha256 digests and the patterns that recognise them. The small inputs a warm
 * run hashes (a manifest, a config, chain IDs) are hashed in JavaScript, so a
 * tool that reads an image from the store does not load node:crypto: its ~25
 * modules cost several ms of CPU at every start (issue 17). Past a small
 * budget of such bytes per process, node:crypto is loaded on first use;
 * randomHex reads /dev/urandom. Both give the same digest (lib-common/test/digest.test.ts
 * holds sha256Js to node:crypto). Nothing here fails but assertDigest and
 * digestHex, with ERR_INPUT_RECORD.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { ConveyorError } from './errors.js';

/** A sha256 digest, `sha256:` and 64 lowercase hex digits: the one pattern for digests (no g/y flag, so `.test` keeps no state). */
export const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
/** 64 lowercase hex digits: a digest's hex part, and ids made of one (chain-ID directories, container ids). */
export const SHA256_HEX = /^[a-f0-9]{64}$/;

/**
 * Bytes a process hashes in JavaScript before it loads node:crypto instead: cold (interpreted) JavaScript hashes
 * about 2 KiB per ms, and loading node:crypto costs about 5 ms, so past this it is cheaper to load it.
 */
export const JS_HASH_BUDGET = 8 * 1024;
let jsHashBudget = JS_HASH_BUDGET;

let crypto: typeof import('node:crypto') | undefined;
/**
 * node:crypto, loaded on first use. process.getBuiltinModule (Node 20.16) loads a builtin synchronously from an ES
 * module; node:module's createRequire would load Node's ES module loader, about what node:crypto costs.
 */
function nodeCrypto(): typeof import('node:crypto') {
  crypto ??= process.getBuiltinModule('node:crypto') as typeof import('node:crypto');
  return crypto;
}

export function sha256(data: Buffer | string): string {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  if (crypto === undefined && bytes.length <= jsHashBudget) {
    jsHashBudget -= bytes.length;
    return `sha256:${sha256Js(bytes)}`;
  }
  return `sha256:${nodeCrypto().createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * `bytes` random bytes in hex (container ids, temporary names, owner tokens), read from the kernel's
 * /dev/urandom, the source node:crypto seeds from too: a container's start should not load node:crypto
 * for 32 bytes. node:crypto where /dev/urandom cannot be read (a chroot without /dev).
 */
export function randomHex(bytes: number): string {
  const buffer = Buffer.allocUnsafe(bytes);
  let fd: number | undefined;
  try {
    fd = openSync('/dev/urandom', 'r');
    for (let filled = 0; filled < bytes; ) {
      const got = readSync(fd, buffer, filled, bytes - filled, null);
      if (got === 0) throw new Error('/dev/urandom: end of file');
      filled += got;
    }
    return buffer.toString('hex');
  } catch {
    return nodeCrypto().randomBytes(bytes).toString('hex');
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
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

/** SHA-256's round constants (FIPS 180-4, 4.2.2), as int32s. */
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74,
  0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d,
  0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e,
  0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5,
  0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
/** SHA-256 (FIPS 180-4) of `data`, in hex, in plain JavaScript: for small inputs (see sha256). */
export function sha256Js(data: Uint8Array): string {
  const length = data.length;
  const blocks = Math.ceil((length + 9) / 64);
  const m = new Uint8Array(blocks * 64);
  // The message, a 0x80 byte, zeros, and its length in bits (64-bit big-endian) fill whole 64-byte blocks.
  m.set(data);
  m[length] = 0x80;
  const end = m.length;
  const bitsHigh = Math.floor(length / 0x20000000);
  const bitsLow = (length << 3) >>> 0;
  m[end - 8] = bitsHigh >>> 24;
  m[end - 7] = bitsHigh >>> 16;
  m[end - 6] = bitsHigh >>> 8;
  m[end - 5] = bitsHigh;
  m[end - 4] = bitsLow >>> 24;
  m[end - 3] = bitsLow >>> 16;
  m[end - 2] = bitsLow >>> 8;
  m[end - 1] = bitsLow;
  // The hash state as int32s (the words above 2^31 as their negative twins): all arithmetic stays in 32-bit integers.
  let h0 = 0x6a09e667;
  let h1 = 0xbb67ae85 | 0;
  let h2 = 0x3c6ef372;
  let h3 = 0xa54ff53a | 0;
  let h4 = 0x510e527f;
  let h5 = 0x9b05688c | 0;
  let h6 = 0x1f83d9ab;
  let h7 = 0x5be0cd19;
  const w = new Int32Array(64);
  for (let offset = 0; offset < end; offset += 64) {
    for (let i = 0; i < 16; i++) {
      const j = offset + i * 4;
      w[i] = (m[j] << 24) | (m[j + 1] << 16) | (m[j + 2] << 8) | m[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h0;
    let b = h1;
    let c = h2;
    let d = h3;
    let e = h4;
    let f = h5;
    let g = h6;
    let h = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + h) | 0;
  }
  let hex = '';
  for (const word of [h0, h1, h2, h3, h4, h5, h6, h7]) hex += (word >>> 0).toString(16).padStart(8, '0');
  return hex;
}
