/**
 * The local store. Its top is an OCI image layout (`oci-layout`, `index.json`,
 * `blobs/sha256/…`) that skopeo, umoci and podman read directly. Beside it:
 *
 *   ingest/<hex>            partial downloads, resumable, keyed by digest
 *   layers/<chain hex>/     unpacked layers keyed by chain ID (see layer-unpack)
 *   l/<short>               short links to layer dirs for overlay lowerdir
 *   containers/<id>/        container state, upper/work/merged, bundle, logs
 *                           (container/state.ts, container/log.ts)
 *   names/<name>            the id holding a container name (container/state.ts)
 *   flattened/<hash>.json   trees layer-unpack --flatten built (overlay/flattened.ts)
 *   locks/                  cross-process locks
 *   tmp/                    made by init, 0700; nothing writes there today: a
 *                           temporary file sits beside its target instead
 *                           (writeFileAtomic's `<path>.<pid>.<rand>.tmp`,
 *                           layers/.tmp-*, ingest/), the same filesystem, so
 *                           its rename is atomic
 *
 * layers/, containers/ and volumes/ hold unrelated trees: they are marked the
 * top of directory hierarchies for ext4's allocator when made (mkdirClosedTop,
 * top-dir.ts).
 *
 * Invariant: a file under blobs/ always holds the bytes its name promises.
 * Every blob is written to a temporary file, verified, fsynced and renamed,
 * and the directory fsynced (durable.ts), as index.json and every other file
 * the store publishes: a crash or power loss leaves the old or the new.
 *
 * Permissions: the store root is 0700 and that one directory is the boundary.
 * Unpacked layers keep setuid binaries and file capabilities, so another local
 * user who could reach layers/<chain>/diff or a container's merged dir could
 * run them (Moby's CVE-2021-41091). We chose a closed root over Docker's 0711
 * root with 0700 sub-trees because other programs write into our OCI layout
 * with their own modes (skopeo copy creates blobs/ 0755, umoci and podman
 * likewise): with 0711 every such directory would be one more hole to
 * re-close, with 0700 at the top nothing below it is reachable whatever its
 * mode. skopeo, umoci and podman still read the layout as the store's owner
 * (or root), which is the only way it is used. Sub-trees we create are 0700 too,
 * so loosening the root by hand does not open the layers at once.
 */
// node:fs/promises through node:fs's getter: loaded when first used (a write), not by every reader of the store (issue 17).
import { constants as fsConstants, promises as fsp, lstatSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { assertDigest, digestHex, randomHex, sha256, SHA256_DIGEST, SHA256_HEX } from './digest.js';
import { publishFile, writeFileDurable } from './durable.js';
import { ConveyorError, namingStore, storeIoError } from './errors.js';
import { withLock } from './lock.js';
import { inUserNamespace, isRootless, overflowUid } from './rootless/detect.js';
import type { Descriptor } from './records.js';

/** img-import's staging files: `ingest/import-<owner token>` (lock.ts), swept by the gc once their owner is gone. */
export const IMPORT_STAGING_PREFIX = 'import-';
/** In a container dir mounted by fuse-overlayfs: the JSON list of its lower dirs (mountinfo shows none; gc.ts reads it). */
export const FUSE_LOWERDIRS_FILE = 'lowerdirs.json';

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** containerd's annotation for the full image name; we set both. */
export const IMAGE_NAME_ANNOTATION = 'io.containerd.image.name';

export interface OciIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/**
 * A container id: 64 lowercase hex characters, as Docker's (overlay/mount.ts's
 * newContainerId). It names `containers/<id>/`, so nothing else may pass for
 * one: a record's id becomes a path under the store.
 */
export function isContainerId(id: unknown): id is string {
  return typeof id === 'string' && SHA256_HEX.test(id);
}

/** Mode of the store root and of every directory we create in it: owner only. */
const STORE_DIR_MODE = 0o700;

/**
 * The temporary name writeFileAtomic writes `path` under before its rename: `<path>.<pid>.<rand>.tmp`.
 * The writer's pid lets the gc tell a dead writer's leftover from a live one's; every atomic write in
 * the store names its temporary file so (container/state.ts writeStateSync too).
 */
export function atomicTempPath(path: string, writerPid: number): string {
  return `${path}.${writerPid}.${randomHex(4)}.tmp`;
}

export interface StoreOptions {
  /** Called with a message for things the user should know but that do not stop the work (a loose store tightened, a malformed index entry skipped). */
  warn?: (message: string) => void;
}

export class Store {
  readonly root: string;
  readonly warn: (message: string) => void;
  private tightened = false;
  private initialized?: Promise<void>;

  constructor(root: string, options: StoreOptions = {}) {
    this.root = root;
    this.warn = options.warn ?? (() => undefined);
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
    if (!isContainerId(id)) throw new ConveyorError('ERR_INPUT_RECORD', `not a container id: ${JSON.stringify(id)}`);
    return join(this.containersDir, id);
  }
  lockPath(name: string): string {
    return join(this.locksDir, `${name}.lock`);
  }

  /**
   * Creates the layout if missing, closed to other users (see the top of this
   * file), and tightens a store left open by an older version or another tool.
   * Idempotent and safe to race; does its work once per Store object (the
   * layout is not expected to vanish under a running tool).
   */
  async init(): Promise<void> {
    // Once per Store object (a pull asks at its start and again when it tags the image); a failure is not kept.
    this.initialized ??= this.makeLayout().catch((error) => {
      this.initialized = undefined;
      throw error;
    });
    return this.initialized;
  }

  private async makeLayout(): Promise<void> {
    await this.tighten();
    for (const dir of [join(this.root, 'blobs'), this.blobsDir, this.tmpDir]) await mkdirClosed(dir);
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

  /**
   * Writes a file in the store atomically and durably (durable.ts: temp, fsync,
   * rename, fsync the directory; `durable: false`, atomically only). The temporary name carries our pid, so the
   * gc can tell a dead writer's leftover from a live one's. ERR_STORE_IO naming
   * the path and the store on failure, with nothing left behind.
   */
  async writeFileAtomic(path: string, data: string | Buffer, options: { durable?: boolean } = {}): Promise<void> {
    const temp = atomicTempPath(path, process.pid);
    await writeFileDurable(path, data, { temp, sync: options.durable !== false }).catch((error) => {
      throw this.ioError(error, path);
    });
  }

  /** ERR_STORE_IO for a failed write under the store, naming the path and the store (errors.ts storeIoError). */
  ioError(error: unknown, path: string, doing = 'cannot write'): ConveyorError {
    // A ConveyorError already says what and where (durable.ts): the store is named once.
    return error instanceof ConveyorError ? namingStore(error, this.root) : storeIoError(error, { path, doing, store: this.root });
  }

  /** True when the blob is present (and, when size is given, of that size). */
  async hasBlob(digest: string, size?: number): Promise<boolean> {
    try {
      // Synchronous, as the reads below: a stat answered from the kernel's caches, where the promise API is a
      // round trip through the thread pool (and node:fs/promises to load) for each file of a warm read.
      const info = statSync(this.blobPath(digest));
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
      // Read at once (a manifest or config: a few KiB, from the page cache on a warm run; see hasBlob).
      data = readFileSync(this.blobPath(digest));
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

  /**
   * Closes the store root to other users: creates it 0700 when missing, and
   * when it exists with group or other bits, chmods it to 0700 with a
   * warning. The mode is set with chmod, since mkdir's is masked by the umask.
   * Runs once per Store object.
   */
  async tighten(): Promise<void> {
    if (this.tightened) return;
    let info;
    try {
      info = statSync(this.root); // no trip through the thread pool for one stat
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      // Root's parents keep the usual modes (they may be shared, like /var/lib); a user's (~/.local/share) are made 0700, as XDG asks.
      await fsp.mkdir(dirname(this.root), { recursive: true, ...(isRootless() ? { mode: 0o700 } : {}) });
      await mkdirClosed(this.root);
      this.tightened = true;
      return;
    }
    if (!info.isDirectory()) throw new ConveyorError('ERR_STORE_IO', `store root ${this.root} is not a directory`);
    if ((info.mode & 0o077) !== 0) {
      const was = (info.mode & 0o7777).toString(8).padStart(4, '0');
      try {
        await fsp.chmod(this.root, STORE_DIR_MODE);
        this.warn(`store ${this.root} was mode ${was}, open to other users; changed to 0700 so they cannot reach unpacked layers (setuid files) or containers`);
      } catch (error) {
        this.warn(
          `store ${this.root} is mode ${was}, open to other users, and cannot be closed: ${(error as Error).message} (chmod 700 ${this.root} as its owner)`,
        );
      }
    }
    this.tightened = true;
  }

  /** Stores a small blob after checking its digest. Fails with ERR_DIGEST_MISMATCH and stores nothing otherwise. */
  async writeBlob(digest: string, data: Buffer): Promise<void> {
    assertDigest(digest);
    const actual = sha256(data);
    if (actual !== digest) {
      throw new ConveyorError('ERR_DIGEST_MISMATCH', `content does not match ${digest}: got ${actual}`);
    }
    if (await this.hasBlob(digest, data.length)) return;
    // The layout first (once per Store): a store never holds blobs without its index.json, even after a crash.
    await this.init();
    await fsp.mkdir(this.blobsDir, { recursive: true, mode: STORE_DIR_MODE });
    await this.writeFileAtomic(this.blobPath(digest), data);
  }

  /**
   * Moves a verified ingest file into blobs/, durably. The caller has already
   * checked the digest while streaming; the rename is the commit point.
   */
  async commitIngest(digest: string, ingestFile: string): Promise<void> {
    const path = this.blobPath(digest);
    // The layout first (once per Store; img-fetch starts it beside the downloads): a store never holds blobs
    // without its index.json, even after a crash (img-fsck's FSCK_INDEX_INVALID).
    await this.init();
    try {
      await fsp.mkdir(this.blobsDir, { recursive: true, mode: STORE_DIR_MODE });
      // fsync before the rename, the directory after (durable.ts): a crash never leaves a short blob under its digest.
      await publishFile(ingestFile, path);
    } catch (error) {
      throw this.ioError(error, path);
    }
  }

  async readIndex(): Promise<OciIndex> {
    let text: string;
    try {
      // Read at once (see hasBlob): tens of KiB with hundreds of images.
      text = readFileSync(join(this.root, 'index.json'), 'utf8');
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

  /**
   * Read-modify-write of index.json under the store's index lock; the write is atomic. A change that leaves the
   * index as it was writes nothing (no rewrite, no fsync): an unchanged re-tag or rebuild costs a read.
   */
  async updateIndex(change: (index: OciIndex) => OciIndex | void): Promise<OciIndex> {
    await this.init();
    return withLock(this.lockPath('index'), async () => {
      const index = await this.readIndex();
      const before = JSON.stringify(index);
      const next = change(index) ?? index;
      if (JSON.stringify(next) !== before) await this.writeFileAtomic(join(this.root, 'index.json'), JSON.stringify(next, null, 2) + '\n');
      return next;
    });
  }

  /**
   * Points `ref` (a normalised reference; several: each, in one write) at a manifest, replacing what it pointed at
   * before. The entries go last, in order; tagging again what is so already writes nothing.
   */
  async tagManifest(ref: string | readonly string[], descriptor: Descriptor): Promise<void> {
    const refs = new Set(typeof ref === 'string' ? [ref] : ref);
    await this.updateIndex((index) => {
      // Null-safe: index.json may hold entries another tool (or a hand) wrote malformed; they are kept as they are.
      index.manifests = index.manifests.filter((m) => !refs.has((m as Descriptor | null)?.annotations?.[REF_NAME_ANNOTATION] as string));
      for (const name of refs) {
        index.manifests.push({
          mediaType: descriptor.mediaType,
          digest: descriptor.digest,
          size: descriptor.size,
          annotations: { ...(descriptor.annotations ?? {}), [REF_NAME_ANNOTATION]: name, [IMAGE_NAME_ANNOTATION]: name },
        });
      }
    });
  }

  /**
   * The well-formed entries of index.json, in order, each with its position.
   * index.json may be written by other tools (or by hand): an entry that is
   * not a descriptor (null, a string, a bad digest or size, annotations that
   * are not strings) is skipped with a warning instead of failing every
   * reader. readIndex keeps them, so a rewrite never drops another tool's data.
   */
  async indexEntries(): Promise<{ entry: Descriptor; position: number }[]> {
    const index = await this.readIndex();
    const entries: { entry: Descriptor; position: number }[] = [];
    (index.manifests as unknown[]).forEach((entry, position) => {
      const problem = indexEntryProblem(entry);
      if (problem) this.warn(`${join(this.root, 'index.json')}: skipping entry ${position}: ${problem}`);
      else entries.push({ entry: entry as Descriptor, position });
    });
    return entries;
  }

  /** The manifest descriptor `ref` points at, or undefined. */
  async lookup(ref: string): Promise<Descriptor | undefined> {
    return (await this.indexEntries()).find(({ entry }) => entry.annotations?.[REF_NAME_ANNOTATION] === ref)?.entry;
  }
}

/** Why an index.json entry is not a usable descriptor, or undefined when it is one. */
export function indexEntryProblem(entry: unknown): string | undefined {
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) return `not a descriptor object: ${JSON.stringify(entry)?.slice(0, 80)}`;
  const d = entry as Record<string, unknown>;
  if (typeof d.mediaType !== 'string') return 'mediaType is not a string';
  if (typeof d.digest !== 'string' || !SHA256_DIGEST.test(d.digest)) return `digest is not a sha256 digest: ${JSON.stringify(d.digest)?.slice(0, 80)}`;
  if (!Number.isSafeInteger(d.size) || (d.size as number) < 0) return 'size is not a non-negative integer';
  if (d.annotations !== undefined) {
    if (d.annotations === null || typeof d.annotations !== 'object' || Array.isArray(d.annotations)) return 'annotations is not an object';
    if (Object.values(d.annotations).some((v) => typeof v !== 'string')) return 'an annotation value is not a string';
  }
  if (d.platform !== undefined && (d.platform === null || typeof d.platform !== 'object' || Array.isArray(d.platform))) return 'platform is not an object';
  return undefined;
}

/**
 * A small regular file's text, for files in the store that anyone who can write there may have planted:
 * undefined when it is missing, not a regular file (a symlink is never followed; a FIFO does not block the
 * open: O_NONBLOCK), larger than `max` bytes, or unreadable.
 */
export async function readSmallRegularFile(path: string, max: number): Promise<string | undefined> {
  const handle = await fsp.open(path, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK).catch(() => undefined);
  if (!handle) return undefined;
  try {
    const info = await handle.stat();
    if (!info.isFile() || info.size > max) return undefined;
    return await handle.readFile('utf8');
  } catch {
    return undefined;
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * mkdir with the store's closed mode, chmod'ed since mkdir's mode is masked by the umask. Existing dirs are left alone.
 * True when it made the directory.
 */
export async function mkdirClosed(path: string): Promise<boolean> {
  try {
    await fsp.mkdir(path, { mode: STORE_DIR_MODE });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  await fsp.chmod(path, STORE_DIR_MODE);
  return true;
}

/**
 * mkdirClosed for a directory whose children are unrelated trees (layers/, containers/, volumes/): when it is
 * made, it is marked the top of directory hierarchies for ext4's allocator (top-dir.ts: an unpack soon after a
 * deletion is otherwise quadratic in kernel time on a filesystem without a journal). Loaded only then.
 */
export async function mkdirClosedTop(path: string): Promise<void> {
  if (!(await mkdirClosed(path))) return;
  const { markTopOfHierarchies } = await import('./top-dir.js');
  await markTopOfHierarchies(path);
}

/**
 * Refuses a store that anyone but root (or, for a non-root caller, the caller
 * itself) could change, as sshd's StrictModes refuses such key files. Tools
 * running as root follow paths in the store and write there (mount, unpack,
 * remove): a store another user could write, or whose parent they could
 * rename entries in, lets them swap a directory for a symlink between our
 * check and our use and aim root's writes and mounts anywhere.
 *
 * The store and every ancestor up to / must be owned by root (or the caller)
 * and not writable by group or others. One exception for ancestors: a
 * root-owned sticky directory such as /tmp (1777). In a sticky directory only
 * an entry's owner, the directory's owner or root may rename or remove the
 * entry, so others can add their own names there but cannot replace ours: the
 * next component is checked to be ours (or root's), so the path stays ours.
 * The store itself must not be sticky-writable: there, others could create
 * names we would later use.
 *
 * The path must contain no symlink (its realpath is itself): a symlink's
 * target is only as safe as every directory it passes, and records carry
 * paths under the store as written. A store that does not exist yet is
 * checked from its nearest existing ancestor; we create the rest ourselves.
 * Inside a rootless tool's user namespace, a parent owned by an id it does
 * not map (real root's /home or /) reads as the overflow uid; it counts as
 * root's only on the way to the store rootless/enter checked outside before
 * entering (trustCheckedOutside, called by runCli there).
 * Fails with ERR_STORE_UNSAFE.
 */
let checkedOutside: string | undefined;

/** Inside a rootless tool's user namespace: the store whose path rootless/enter checked outside (see assertTrustedStore). */
export function trustCheckedOutside(root: string): void {
  checkedOutside = resolve(root);
}

export async function assertTrustedStore(root: string): Promise<void> {
  const uid = process.geteuid?.() ?? 0;
  const allowed = (owner: number) => owner === 0 || owner === uid;
  const overflow = inUserNamespace() ? overflowUid() : undefined;
  const who = uid === 0 ? 'root' : `root or uid ${uid}`;
  const unsafe = (message: string, hint: string) => new ConveyorError('ERR_STORE_UNSAFE', message, { hint });
  const absolute = resolve(root);
  let existing = absolute;
  // Synchronous calls: a handful on cached directories cost less than as many trips through libuv's thread pool,
  // one after another (issue 17: a run's start waits for this check).
  for (;;) {
    try {
      lstatSync(existing);
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || existing === '/') throw error;
      existing = dirname(existing);
    }
  }
  const real = realpathSync.native(existing);
  if (real !== existing) {
    throw unsafe(
      `store path ${absolute} passes through a symlink (${existing} is ${real})`,
      `give the store by its real path, --root ${join(real, absolute.slice(existing.length))}`,
    );
  }
  let child: { path: string; uid: number } | undefined;
  for (let dir = existing; ; dir = dirname(dir)) {
    const info = lstatSync(dir);
    const isStore = dir === absolute;
    const onCheckedPath = checkedOutside !== undefined && (checkedOutside === dir || checkedOutside.startsWith(dir === '/' ? '/' : `${dir}/`));
    const owner = !isStore && info.uid === overflow && onCheckedPath ? 0 : info.uid;
    if (!info.isDirectory()) throw unsafe(`store path component ${dir} is not a directory`, 'choose another --root');
    if (!allowed(owner)) {
      throw unsafe(
        `${isStore ? 'store' : 'store parent'} ${dir} is owned by uid ${info.uid}, not ${who}`,
        `another user could redirect the store; use a store under directories owned by ${who}`,
      );
    }
    const writable = (info.mode & 0o022) !== 0;
    const sticky = (info.mode & 0o1000) !== 0;
    if (writable && (isStore || !sticky || owner !== 0 || !child || !allowed(child.uid))) {
      const mode = (info.mode & 0o7777).toString(8).padStart(4, '0');
      throw unsafe(
        `${isStore ? 'store' : 'store parent'} ${dir} is mode ${mode}, writable by group or others`,
        `chmod go-w ${dir}, or use a store under directories only ${who} can write`,
      );
    }
    if (dir === '/') return;
    child = { path: dir, uid: owner };
  }
}

function emptyIndex(): OciIndex {
  return { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] };
}

/** Whether the store is on a read-only mount (access(2) says EROFS): a reader then has no writer to lock against. */
export async function isReadOnlyStore(root: string): Promise<boolean> {
  try {
    await fsp.access(root, fsConstants.W_OK);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EROFS';
  }
}

export async function exists(path: string): Promise<boolean> {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
