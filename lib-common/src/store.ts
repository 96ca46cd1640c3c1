/**
 * The local store. Its top is an OCI image layout (`oci-layout`, `index.json`,
 * `blobs/sha256/…`) that skopeo, umoci and podman read directly. Beside it:
 *
 *   ingest/<hex>            partial downloads, resumable, keyed by digest
 *   layers/<chain hex>/     unpacked layers keyed by chain ID (see layer-unpack)
 *   l/<short>               short links to layer dirs for overlay lowerdir
 *   containers/<id>/        container state, upper/work/merged, bundle, logs
 *   locks/                  cross-process locks
 *   tmp/                    scratch on the same filesystem, for atomic renames
 *
 * Invariant: a file under blobs/ always holds the bytes its name promises.
 * Every blob is written to a temporary file, verified, fsynced and renamed.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { assertDigest, digestHex, sha256 } from './digest.js';
import { ConveyorError } from './errors.js';
import { withLock } from './lock.js';
import type { Descriptor } from './records.js';

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** containerd's annotation for the full image name; we set both. */
export const IMAGE_NAME_ANNOTATION = 'io.containerd.image.name';

export interface OciIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export class Store {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  get blobsDir(): string {
    return join(this.root, 'blobs', 'sha256');
  }
  get ingestDir(): string {
    return join(this.root, 'ingest');
  }
  get layersDir(): string {
    return join(this.root, 'layers');
  }
  get linksDir(): string {
    return join(this.root, 'l');
  }
  get containersDir(): string {
    return join(this.root, 'containers');
  }
  get locksDir(): string {
    return join(this.root, 'locks');
  }
  get tmpDir(): string {
    return join(this.root, 'tmp');
  }

  blobPath(digest: string): string {
    return join(this.blobsDir, digestHex(digest));
  }
  ingestPath(digest: string): string {
    return join(this.ingestDir, digestHex(digest));
  }
  layerDir(chainID: string): string {
    return join(this.layersDir, digestHex(chainID));
  }
  containerDir(id: string): string {
    if (!/^[a-f0-9]{12,64}$/.test(id)) throw new ConveyorError('ERR_INPUT_RECORD', `not a container id: ${JSON.stringify(id)}`);
    return join(this.containersDir, id);
  }
  lockPath(name: string): string {
    return join(this.locksDir, `${name}.lock`);
  }

  /** Creates the layout if missing. Idempotent and safe to race. */
  async init(): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    if (!(await exists(join(this.root, 'oci-layout')))) {
      await this.writeFileAtomic(join(this.root, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    }
    if (!(await exists(join(this.root, 'index.json')))) {
      await withLock(this.lockPath('index'), async () => {
        if (!(await exists(join(this.root, 'index.json')))) {
          await this.writeFileAtomic(join(this.root, 'index.json'), JSON.stringify(emptyIndex()));
        }
      });
    }
  }

  /** A unique path in tmp/ (same filesystem as the store, so rename is atomic). */
  tempPath(prefix = 'tmp'): string {
    return join(this.tmpDir, `${prefix}-${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  async writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
    const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      const handle = await open(temp, 'w', 0o644);
      try {
        await handle.writeFile(data);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  }

  /** True when the blob is present (and, when size is given, of that size). */
  async hasBlob(digest: string, size?: number): Promise<boolean> {
    try {
      const info = await stat(this.blobPath(digest));
      return size === undefined || info.size === size;
    } catch {
      return false;
    }
  }

  /** Reads a small blob (manifest, config), verifying its digest. Fails with ERR_STORE_CORRUPT on a mismatch. */
  async readBlob(digest: string): Promise<Buffer> {
    assertDigest(digest);
    let data: Buffer;
    try {
      data = await readFile(this.blobPath(digest));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `blob ${digest} is not in the store ${this.root}`, { hint: 'pull the image again with img-fetch' });
      }
      throw error;
    }
    const actual = sha256(data);
    if (actual !== digest) {
      throw new ConveyorError('ERR_STORE_CORRUPT', `blob ${digest} in ${this.root} holds ${actual}`, { hint: 'remove the blob file and pull again' });
    }
    return data;
  }

  async readJsonBlob<T>(digest: string): Promise<T> {
    const data = await this.readBlob(digest);
    try {
      return JSON.parse(data.toString('utf8')) as T;
    } catch (error) {
      throw new ConveyorError('ERR_MANIFEST_INVALID', `blob ${digest} is not valid JSON: ${(error as Error).message}`);
    }
  }

  /** Stores a small blob after checking its digest. Fails with ERR_DIGEST_MISMATCH and stores nothing otherwise. */
  async writeBlob(digest: string, data: Buffer): Promise<void> {
    assertDigest(digest);
    const actual = sha256(data);
    if (actual !== digest) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `content does not match ${digest}: got ${actual}`);
    }
    if (await this.hasBlob(digest, data.length)) return;
    await mkdir(this.blobsDir, { recursive: true });
    await this.writeFileAtomic(this.blobPath(digest), data);
  }

  /**
   * Moves a verified ingest file into blobs/. The caller has already checked
   * the digest while streaming; the rename is the commit point.
   */
  async commitIngest(digest: string, ingestFile: string): Promise<void> {
    await mkdir(this.blobsDir, { recursive: true });
    await rename(ingestFile, this.blobPath(digest));
  }

  async readIndex(): Promise<OciIndex> {
    let text: string;
    try {
      text = await readFile(join(this.root, 'index.json'), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return emptyIndex();
      throw error;
    }
    try {
      const index = JSON.parse(text) as OciIndex;
      if (!Array.isArray(index.manifests)) throw new Error('manifests is not an array');
      return index;
    } catch (error) {
      throw new ConveyorError('ERR_STORE_CORRUPT', `${join(this.root, 'index.json')} is not a valid OCI index: ${(error as Error).message}`);
    }
  }

  /** Read-modify-write of index.json under the store's index lock; the write is atomic. */
  async updateIndex(change: (index: OciIndex) => OciIndex | void): Promise<OciIndex> {
    await this.init();
    return withLock(this.lockPath('index'), async () => {
      const index = await this.readIndex();
      const next = change(index) ?? index;
      await this.writeFileAtomic(join(this.root, 'index.json'), JSON.stringify(next, null, 2) + '\n');
      return next;
    });
  }

  /** Points `ref` (a normalised reference) at a manifest, replacing what it pointed at before. */
  async tagManifest(ref: string, descriptor: Descriptor): Promise<void> {
    await this.updateIndex((index) => {
      index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== ref);
      index.manifests.push({
        mediaType: descriptor.mediaType,
        digest: descriptor.digest,
        size: descriptor.size,
        annotations: { ...(descriptor.annotations ?? {}), [REF_NAME_ANNOTATION]: ref, [IMAGE_NAME_ANNOTATION]: ref },
      });
    });
  }

  /** The manifest descriptor `ref` points at, or undefined. */
  async lookup(ref: string): Promise<Descriptor | undefined> {
    const index = await this.readIndex();
    return index.manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === ref);
  }
}

function emptyIndex(): OciIndex {
  return { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] };
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

