/**
 * Stages the members of an archive (a tar stream) or of an OCI layout
 * directory into the store's ingest area, hashing each while it is written.
 * Member names are lookup keys only, never paths we write to: each member
 * goes to a fresh `ingest/import-<owner token>` file (lock.ts; the next import and img-prune remove a dead importer's). Small metadata members
 * (manifest.json, index.json, repositories, oci-layout) are also kept in
 * memory.
 *
 * Fails (ERR_LAYER_MALICIOUS) on a name that is absolute or climbs with `..`,
 * (ERR_LAYER_TOO_LARGE) on a member declared larger than maxSize,
 * (ERR_DIGEST_MISMATCH) on a `blobs/sha256/<hex>` member whose bytes hash to
 * something else, (ERR_MANIFEST_INVALID) on a stream that is not a tar or
 * ends early, more than maxMembers members or oversized metadata. The
 * caller removes what was staged with discard(), on failure and after a
 * commit alike.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { ownerToken, tokenAlive } from '@conveyor/lib-common/lock';
import { IMPORT_STAGING_PREFIX, mkdirClosed, type Store } from '@conveyor/lib-common/store';

/** Metadata members are parsed whole: real ones are a few KiB. */
export const MAX_METADATA_BYTES = 8 * 1024 * 1024;
const METADATA_NAMES = new Set(['manifest.json', 'index.json', 'repositories', 'oci-layout']);
/**
 * Each member is one staged file: a real archive has a few per layer, an
 * archive of millions of empty members would only cost inodes and time.
 */
export const DEFAULT_MAX_MEMBERS = 100_000;

export interface StagedMember {
  /** The staged copy under ingest/. */
  file: string;
  digest: string;
  size: number;
  /** The first bytes, to recognise gzip and zstd. */
  head: Buffer;
}

export interface StageOptions {
  store: Store;
  maxSize: number;
  /** Most members (files) staged; default DEFAULT_MAX_MEMBERS. */
  maxMembers?: number;
  onProgress?: (event: { id: string; current: number; total: number; phase: 'start' | 'update' | 'done' }) => void;
}

export class Staging {
  readonly members = new Map<string, StagedMember>();
  readonly metadata = new Map<string, Buffer>();
  /** Symlink members (legacy docker save links duplicate layers): name → target name. */
  private readonly links = new Map<string, string>();
  private readonly files: string[] = [];

  constructor(private readonly options: StageOptions) {}

  /** The member a name stands for, following archive-internal symlinks. */
  get(name: string): StagedMember | undefined {
    let key = normalizeMemberName(name);
    for (let hops = 0; hops < 16; hops++) {
      const member = this.members.get(key);
      if (member) return member;
      const target = this.links.get(key);
      if (target === undefined) return undefined;
      key = target;
    }
    return undefined;
  }

  /** Consumes a tar stream member by member (tar-stream's extract; nothing is buffered whole). */
  async fromTar(input: Readable): Promise<void> {
    const { extract } = await import('tar-stream');
    await mkdirClosed(this.options.store.ingestDir);
    await removeDeadStaging(this.options.store);
    const tar = extract();
    input.on('error', (error) => tar.destroy(error));
    input.pipe(tar);
    try {
      for await (const entry of tar) {
        const { name, type, size, linkname } = entry.header;
        const key = normalizeMemberName(name);
        if (type === 'file' || type === 'contiguous-file') {
          await this.add(key, entry as unknown as Readable, size ?? 0);
        } else if ((type === 'symlink' || type === 'link') && linkname) {
          const target = type === 'symlink' ? posix.join(posix.dirname(key), linkname) : linkname;
          this.links.set(key, normalizeMemberName(target));
          entry.resume();
        } else {
          entry.resume();
        }
      }
    } catch (error) {
      if (error instanceof ConveyorError) throw error;
      throw new ConveyorError('ERR_MANIFEST_INVALID', `not a readable tar archive: ${(error as Error).message}`, {
        hint: 'give a docker save or OCI archive (a truncated download or a compressed tar is not one)',
      });
    }
  }

  /** Stages every regular file of an OCI layout directory; a symlink in it is refused. */
  async fromDirectory(dir: string, prefix = ''): Promise<void> {
    await mkdirClosed(this.options.store.ingestDir);
    if (prefix === '') await removeDeadStaging(this.options.store);
    for (const name of (await readdir(join(dir, prefix))).sort()) {
      const rel = prefix ? `${prefix}/${name}` : name;
      const info = await lstat(join(dir, rel));
      if (info.isDirectory()) await this.fromDirectory(dir, rel);
      else if (info.isFile()) await this.add(rel, createReadStream(join(dir, rel)), info.size);
      else if (info.isSymbolicLink()) throw new ConveyorError('ERR_LAYER_MALICIOUS', `${join(dir, rel)} is a symlink; an image layout holds none`);
    }
  }

  private async add(name: string, body: Readable, declared: number): Promise<void> {
    if (this.files.length >= (this.options.maxMembers ?? DEFAULT_MAX_MEMBERS)) {
      body.destroy();
      throw new ConveyorError('ERR_MANIFEST_INVALID', `the archive has more than ${this.files.length} members; no image has that many`);
    }
    if (METADATA_NAMES.has(name) && declared > MAX_METADATA_BYTES) {
      body.destroy();
      throw new ConveyorError('ERR_MANIFEST_INVALID', `${name} is ${declared} bytes, over the ${MAX_METADATA_BYTES} allowed for metadata`);
    }
    if (declared > this.options.maxSize) {
      body.destroy();
      throw new ConveyorError('ERR_LAYER_TOO_LARGE', `archive member ${name} declares ${declared} bytes, over the limit of ${this.options.maxSize}`, {
        hint: 'raise --max-blob-size if the archive is trusted',
      });
    }
    // Nothing is awaited before the pipeline is attached: a tar entry that ends
    // (or fails, truncated) while nobody listens would never settle.
    // Named by our owner token: img-prune removes it once we are gone (a crash), never while we run.
    const file = join(this.options.store.ingestDir, `${IMPORT_STAGING_PREFIX}${ownerToken()}`);
    this.files.push(file);
    const hash = createHash('sha256');
    const keep = METADATA_NAMES.has(name) ? ([] as Buffer[]) : undefined;
    let head = Buffer.alloc(0);
    let size = 0;
    const big = declared >= 1024 * 1024;
    if (big) this.options.onProgress?.({ id: name, current: 0, total: declared, phase: 'start' });
    body.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      size += chunk.length;
      if (head.length < 8) head = Buffer.concat([head, chunk.subarray(0, 8)]);
      keep?.push(chunk);
      if (big) this.options.onProgress?.({ id: name, current: size, total: declared, phase: 'update' });
    });
    await pipeline(body, createWriteStream(file, { mode: 0o600 }));
    if (size !== declared) throw new ConveyorError('ERR_MANIFEST_INVALID', `archive member ${name} ended after ${size} of ${declared} bytes`);
    if (big) this.options.onProgress?.({ id: name, current: size, total: declared, phase: 'done' });
    const digest = `sha256:${hash.digest('hex')}`;
    const named = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(name);
    if (named && named[1] !== digest.slice(7)) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `archive member ${name} holds ${digest}, not the digest its name promises`);
    }
    this.members.set(name, { file, digest, size, head });
    if (keep) this.metadata.set(name, Buffer.concat(keep));
  }

  /** Removes every staged file still in ingest/ (the committed ones were renamed away). */
  async discard(): Promise<void> {
    await Promise.all(this.files.map((file) => rm(file, { force: true })));
  }
}

/**
 * Removes the staging files of importers that died (SIGKILL) before their
 * discard: the next import cleans up after a crashed one, as the next
 * layer-unpack removes a dead unpack's staging dir, instead of leaving them
 * to img-prune. A live importer's files (its token alive) are never touched.
 */
async function removeDeadStaging(store: Store): Promise<void> {
  const names = await readdir(store.ingestDir).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith(IMPORT_STAGING_PREFIX) && !tokenAlive(name.slice(IMPORT_STAGING_PREFIX.length))) {
      await rm(join(store.ingestDir, name), { force: true });
    }
  }
}

/**
 * The lookup key of an archive member: `./` and repeated slashes dropped.
 * A name that is absolute, climbs out with `..` or holds a NUL is refused:
 * such an archive was built to attack something.
 */
export function normalizeMemberName(name: string): string {
  if (name.includes('\0') || name.startsWith('/') || name.split('/').includes('..')) {
    throw new ConveyorError('ERR_LAYER_MALICIOUS', `archive member name ${JSON.stringify(name)} is absolute or climbs out with ..`);
  }
  const normal = posix.normalize(name).replace(/\/+$/, '');
  if (normal === '.' || normal.startsWith('../')) {
    throw new ConveyorError('ERR_LAYER_MALICIOUS', `archive member name ${JSON.stringify(name)} is not inside the archive`);
  }
  return normal;
}
