/**
 * Blobs copied out of the store for an archive, verified on the way: a stored
 * blob hard-linked as it is (its sha256 checked), or a layer decompressed to
 * the tar its config's diff_id names (gzip with zlib, zstd with the zstd
 * program), both digests checked. A mismatch, or a layer that does not
 * decompress, is ERR_STORE_CORRUPT; a missing blob ERR_IMAGE_NOT_FOUND.
 * Nothing is left behind but the one output file the caller named.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { link, open, rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Store } from '@conveyor/lib-common/store';
import { runProcess } from '@conveyor/lib-common/subprocess';

function corrupt(store: Store, digest: string, what: string): ConveyorError {
  return new ConveyorError('ERR_STORE_CORRUPT', `blob ${digest} in ${store.root}: ${what}`, {
    hint: 'remove the image (img-rm) and pull it again',
  });
}

function notFound(store: Store, digest: string, error: unknown): unknown {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return error;
  return new ConveyorError('ERR_IMAGE_NOT_FOUND', `blob ${digest} is not in the store ${store.root}`, { hint: 'pull the image again with img-fetch' });
}

/** A pass-through stream that hashes what flows through it. */
function hasher(): { stream: Transform; digest: () => string } {
  const hash = createHash('sha256');
  const stream = new Transform({
    transform(chunk, _encoding, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  return { stream, digest: () => `sha256:${hash.digest('hex')}` };
}

/** Streams a stored blob through sha256; throws unless it matches its name. */
export async function verifyBlob(store: Store, digest: string): Promise<void> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of createReadStream(store.blobPath(digest))) hash.update(chunk as Buffer);
  } catch (error) {
    throw notFound(store, digest, error);
  }
  const actual = `sha256:${hash.digest('hex')}`;
  if (actual !== digest) throw corrupt(store, digest, `holds ${actual}`);
}

/** Hard-links the verified blob `digest` at `target` (the tree lives in the store's tmp/: same filesystem). */
export async function linkBlob(store: Store, digest: string, target: string): Promise<void> {
  await verifyBlob(store, digest);
  await link(store.blobPath(digest), target);
}

async function sniff(path: string): Promise<'gzip' | 'zstd' | 'none'> {
  const handle = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(4);
    const { bytesRead } = await handle.read(buffer, 0, 4, 0);
    if (bytesRead >= 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) return 'gzip';
    if (bytesRead >= 4 && buffer.readUInt32BE(0) === 0x28b52ffd) return 'zstd';
    return 'none';
  } finally {
    await handle.close();
  }
}

/**
 * Writes layer `digest` uncompressed at `target` (a plain tar is hard-linked)
 * and checks it against `diffID`: docker load checks layer tars against the
 * config's diff_ids.
 */
export async function writeLayerTar(store: Store, digest: string, diffID: string, target: string): Promise<void> {
  const source = store.blobPath(digest);
  let compression: Awaited<ReturnType<typeof sniff>>;
  try {
    compression = await sniff(source);
  } catch (error) {
    throw notFound(store, digest, error);
  }
  if (compression === 'none') {
    if (digest !== diffID) throw corrupt(store, digest, `an uncompressed layer whose diff_id is ${diffID}`);
    return linkBlob(store, digest, target);
  }
  const compressed = hasher();
  const plain = hasher();
  try {
    if (compression === 'gzip') {
      await pipeline(createReadStream(source), compressed.stream, createGunzip(), plain.stream, createWriteStream(target, { mode: 0o600 }));
    } else {
      await verifyBlob(store, digest);
      const result = await runProcess('zstd', ['-d', '-q', '-f', '-o', target, source]);
      if (result.failed) throw corrupt(store, digest, `zstd: ${result.stderr || result.shortMessage}`);
      await pipeline(createReadStream(target), plain.stream, new Transform({ transform: (_c, _e, done) => done() }));
    }
  } catch (error) {
    await rm(target, { force: true });
    if (error instanceof ConveyorError) throw error;
    if ((error as { code?: string }).code?.startsWith('Z_')) throw corrupt(store, digest, `gzip: ${(error as Error).message}`);
    throw error;
  }
  if (compression === 'gzip' && compressed.digest() !== digest) throw corrupt(store, digest, `holds ${compressed.digest()}`);
  if (plain.digest() !== diffID) throw corrupt(store, digest, `decompresses to ${plain.digest()}, not its diff_id ${diffID}`);
}
