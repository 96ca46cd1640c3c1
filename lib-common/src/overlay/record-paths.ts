/**
 * Paths from records, checked before anything is mounted or run.
 *
 * Records arrive on stdin and may be forged (`"layerDirs": ["/etc"]`, a
 * `store` another user owns, a mount record whose `upper` is /root). A path
 * in one is used only once it is exactly what the store itself would have
 * put there: a trusted store, layer dirs with layer-unpack's meta.json in
 * chain order, a flattened dir the store registered, container paths derived
 * from the id. Every refusal is ERR_INPUT_RECORD and happens before a mount.
 */
import { closeSync, constants as fsConstants, fstatSync, lstatSync, openSync, readFileSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { isAbsolute, join, normalize, relative, resolve } from 'node:path';
import { SHA256_DIGEST, SHA256_HEX } from '../digest.js';
import { ConveyorError } from '../errors.js';
import { isRegisteredFlattened } from './flattened.js';
import { containerPaths, MAX_LOWER_LAYERS, type ContainerPaths } from './mount.js';
import { badRecord, type RootfsRecord } from '../records.js';
import { assertTrustedStore, isContainerId, Store, type StoreOptions } from '../store.js';

/**
 * The store a record belongs to (its own `store` field, else `root`), checked
 * before any path in it is trusted: absolute and normalised, and safe by
 * assertTrustedStore (only root, or the caller, can change it or its parents;
 * no symlink on the way). A store named by a record that fails the check is
 * ERR_INPUT_RECORD; the --root store fails with ERR_STORE_UNSAFE. The store is
 * then closed to other users (warning through options.warn when it was open).
 * `rootChecked`: assertTrustedStore(resolve(root)) begun earlier (ctr-spawn, while it waits for
 * the record): used instead of a second check when the record's store is `root`.
 */
export async function trustedRecordStore(
  record: Record<string, unknown>,
  root: string,
  options: StoreOptions = {},
  rootChecked?: Promise<void>,
): Promise<Store> {
  const named = record.store;
  if (named !== undefined && (typeof named !== 'string' || !isAbsolute(named) || normalize(named) !== named || (named.endsWith('/') && named !== '/'))) {
    throw badRecord(undefined, `store is not a normalised absolute path: ${JSON.stringify(named)}`);
  }
  const path = named === undefined ? resolve(root) : named;
  try {
    await (rootChecked !== undefined && path === resolve(root) ? rootChecked : assertTrustedStore(path));
  } catch (error) {
    const err = error as ConveyorError;
    if (named === undefined || err.code !== 'ERR_STORE_UNSAFE') throw error;
    throw new ConveyorError('ERR_INPUT_RECORD', `record names an unsafe store: ${err.message}`, { hint: err.hint, cause: error });
  }
  const store = new Store(path, options);
  await store.tighten();
  return store;
}

/** A layer's meta.json may be written by layer-unpack only; more than this is not one. */
const MAX_META_BYTES = 1024 * 1024;

function refuse(message: string, hint?: string): never {
  throw badRecord(undefined, message, hint ?? 'use records produced by layer-unpack and overlay-mount for this store');
}

/**
 * lstat's each component from the (trusted) store root down to `path`, which
 * must lie inside it: every one must be a real directory, never a symlink, so
 * the path means what it says. A missing component is ERR_MOUNT_FAILED (an
 * unpacked layer or container removed since the record was written).
 */
async function assertRealDirsUnder(store: Store, path: string, what: string, mustExist = true): Promise<void> {
  const parts = relative(store.root, path).split('/');
  let current = store.root;
  for (const part of parts) {
    current = join(current, part);
    let info;
    try {
      // Synchronous: a few calls per layer on cached directories, cheaper than trips through libuv's thread pool.
      info = lstatSync(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        if (!mustExist) return;
        if (what.startsWith('layer'))
          throw new ConveyorError('ERR_MOUNT_FAILED', `${what} ${path} does not exist`, { hint: 'unpack the image first: layer-unpack' });
        throw new ConveyorError('ERR_MOUNT_NOT_FOUND', `${path} is not mounted: ${current} does not exist`, { hint: 'mount it again: overlay-mount' });
      }
      throw error;
    }
    if (info.isSymbolicLink()) refuse(`${what} ${path}: ${current} is a symlink`);
    if (!info.isDirectory()) refuse(`${what} ${path}: ${current} is not a directory`);
  }
}

/**
 * Checks that `dir` is an unpacked layer of `store`: exactly
 * `<store>/layers/<64 hex>/diff`, no symlink on the way, beside a meta.json
 * (a regular file, not a symlink) naming that chain ID, as layer-unpack writes
 * it last. Anything else, a host directory such as /etc, a flattened tree, a
 * layer of another store, is refused with ERR_INPUT_RECORD.
 */
async function assertLayerDir(store: Store, dir: unknown): Promise<TrustedLayer> {
  if (typeof dir !== 'string') refuse(`layer directory is not a string: ${JSON.stringify(dir)}`);
  const [top, hex, diff, ...rest] = relative(store.root, dir).split('/');
  const match = top === 'layers' && SHA256_HEX.test(hex ?? '') && diff === 'diff' && rest.length === 0 ? [dir, hex] : null;
  if (!isAbsolute(dir) || !match || dir !== join(store.root, 'layers', match[1], 'diff')) {
    refuse(
      `layer directory ${JSON.stringify(dir)} is not ${join(store.root, 'layers', '<64 hex>', 'diff')}`,
      "lower layers come only from the store's layers/; run the record through layer-unpack",
    );
  }
  await assertRealDirsUnder(store, dir, 'layer directory');
  const metaPath = join(store.root, 'layers', match[1], 'meta.json');
  let meta: unknown;
  try {
    // O_NOFOLLOW: a meta.json symlink is not layer-unpack's. Read synchronously, as the lstats above.
    const fd = openSync(metaPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    try {
      const info = fstatSync(fd);
      if (!info.isFile() || info.size > MAX_META_BYTES) throw new Error('not a small regular file');
      meta = JSON.parse(readFileSync(fd, 'utf8'));
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    refuse(
      `layer directory ${dir} has no valid meta.json (${(error as Error).message}): not a layer unpacked by layer-unpack`,
      'unpack the image again: layer-unpack',
    );
  }
  const m = meta as { chainID?: unknown; diffID?: unknown; parentChainID?: unknown } | null;
  if (
    !m ||
    typeof m !== 'object' ||
    m.chainID !== `sha256:${match[1]}` ||
    typeof m.diffID !== 'string' ||
    !SHA256_DIGEST.test(m.diffID) ||
    !(m.parentChainID === undefined || m.parentChainID === null || (typeof m.parentChainID === 'string' && SHA256_DIGEST.test(m.parentChainID)))
  ) {
    refuse(`layer directory ${dir}: meta.json does not describe chain ${match[1].slice(0, 12)}`, 'unpack the image again: layer-unpack');
  }
  return { dir, chainID: m.chainID, parentChainID: m.parentChainID as string | null | undefined };
}

/** What assertLayerDir vouches for: the directory and the chain its meta.json names. */
interface TrustedLayer {
  dir: string;
  chainID: string;
  /** null for a bottom layer; undefined in metas written before layer-unpack recorded it. */
  parentChainID?: string | null;
}

/**
 * The lower dirs of a rootfs record, bottom first, each checked by
 * assertLayerDir. A flattened record (`dir`, no layerDirs) is the caller's
 * explicit choice of a tree (layer-unpack --flatten DIR put it where they
 * asked): it is taken as the single, never-written lower of the container's
 * overlay, but only in that role: a flattened tree never passes as a layer
 * (a `dir` path in layerDirs is refused like any path outside layers/).
 * It must be an absolute, normalised path to a directory, not a symlink, and
 * registered in the store by layer-unpack (flattened.ts): a record alone
 * cannot name /etc as a root filesystem.
 */
export async function trustedLowerDirs(store: Store, record: RootfsRecord): Promise<string[]> {
  const layerDirs = (record as { layerDirs?: unknown }).layerDirs;
  if (layerDirs !== undefined && !(Array.isArray(layerDirs) && layerDirs.length === 0)) {
    if (!Array.isArray(layerDirs)) refuse('rootfs record: layerDirs is not an array');
    if (layerDirs.length > MAX_LOWER_LAYERS) {
      throw new ConveyorError('ERR_MOUNT_FAILED', `${layerDirs.length} layers exceed overlayfs's limit of ${MAX_LOWER_LAYERS}`, {
        hint: 'flatten the image with layer-unpack --flatten',
      });
    }
    // Each layer must sit on the one it was unpacked over (meta.json's parentChainID, written by
    // layer-unpack since chain IDs are recomputed): a record cannot stack stored layers of
    // different images, or reorder one image's. Metas from before the field are not checked.
    let below: string | null = null;
    for (const dir of layerDirs) {
      const meta = await assertLayerDir(store, dir);
      if (meta.parentChainID !== undefined && meta.parentChainID !== below) {
        refuse(
          `layer directory ${dir} was unpacked over ${meta.parentChainID ?? 'nothing'}, not ${below ?? 'nothing'}`,
          'give the layers of one image, bottom first, as layer-unpack lists them',
        );
      }
      below = meta.chainID;
    }
    return layerDirs as string[];
  }
  const dir = (record as { dir?: unknown }).dir;
  if (dir === undefined) refuse('rootfs record has neither layerDirs nor dir', 'produce it with layer-unpack');
  if (typeof dir !== 'string' || !isAbsolute(dir) || normalize(dir) !== dir)
    refuse(`rootfs record: dir is not a normalised absolute path: ${JSON.stringify(dir)}`);
  let info;
  try {
    info = await lstat(dir);
  } catch {
    throw new ConveyorError('ERR_MOUNT_FAILED', `flattened rootfs ${dir} does not exist`, { hint: 'unpack it again: layer-unpack --flatten DIR' });
  }
  if (info.isSymbolicLink()) refuse(`rootfs record: dir ${dir} is a symlink`, 'give the directory itself');
  if (!info.isDirectory()) refuse(`rootfs record: dir ${dir} is not a directory`);
  if (!(await isRegisteredFlattened(store, dir))) {
    refuse(
      `rootfs record: dir ${dir} was not flattened by layer-unpack for the store ${store.root}`,
      'a dir is accepted only as layer-unpack --flatten DIR registered it in the store; flatten the image again',
    );
  }
  return [dir];
}

/**
 * The container paths of a mount record, derived from its id alone; every
 * path the record states (containerDir, upper, work, target) must equal the
 * derived one exactly, and the container directory and its merged dir must be
 * real directories (no symlink) in the store. ERR_INPUT_RECORD otherwise.
 * With mustExist false (unmounting, which is idempotent), a container
 * directory already gone is accepted; what exists is still checked.
 */
export async function trustedMountPaths(store: Store, record: Record<string, unknown>, options: { mustExist?: boolean } = {}): Promise<ContainerPaths> {
  const id = record.id;
  if (!isContainerId(id)) refuse(`mount record: not a container id: ${JSON.stringify(id)}`);
  const paths = containerPaths(store, id);
  const expected: [string, string][] = [
    ['containerDir', paths.containerDir],
    ['upper', paths.upper],
    ['work', paths.work],
    ['target', paths.merged],
  ];
  for (const [field, want] of expected) {
    const value = record[field];
    if (value === undefined && field !== 'target') continue;
    if (value !== want)
      refuse(`mount record: ${field} ${JSON.stringify(value)} is not ${want}`, 'mount records come from overlay-mount; the paths follow from the id');
  }
  await assertRealDirsUnder(store, paths.merged, 'container directory', options.mustExist ?? true);
  return paths;
}
