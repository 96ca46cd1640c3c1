/**
 * Overlay mounts of image layers, shared by overlay-mount and ctr-spawn.
 *
 * A container directory `<store>/containers/<id>/` holds `upper/`, `work/`
 * and `merged/`; overlayfs is mounted on `merged/` with the layer directories
 * as lower dirs (the top layer first in the option, as the kernel wants).
 *
 * mount(2) copies its option string into one page (4096 bytes), so an image
 * with many layers in a deep store overflows it. As Docker's overlay2 does, the
 * layers are then named by short links `<store>/l/<26 hex>` → layer dir and
 * the `mount` binary runs with cwd `<store>/l`, so the option holds only the
 * short relative names. The same path is taken when a path holds a character
 * the option syntax cannot carry (`,` `:` `\`, whitespace).
 *
 * Node has no mount syscall: mount and umount are util-linux binaries. A failed
 * mount is reported as ERR_MOUNT_FAILED with the kernel's own reason, read from
 * the kernel log when it is readable.
 *
 * Records arrive on stdin and may be forged: a path in one is used only after
 * it is checked to be exactly what the store would have put there (see
 * trustedRecordStore, trustedLowerDirs and trustedMountPaths below), before
 * anything is mounted or run.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, open, readFile, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import { constants as fsConstants } from 'node:fs';
import { isAbsolute, join, normalize, relative, resolve } from 'node:path';
import { ConveyorError } from './errors.js';
import { isRegisteredFlattened } from './flattened.js';
import { readKernelLog, uptimeMicros } from './kmsg.js';
import type { RootfsRecord } from './records.js';
import { assertTrustedStore, mkdirClosed, Store, type StoreOptions } from './store.js';

/** The kernel's limit on mount(2) option data, minus room for what mount(8) may add. */
export const MOUNT_OPTIONS_LIMIT = 4096 - 256;
/** overlayfs refuses more lower layers than this (OVL_MAX_STACK). */
export const MAX_LOWER_LAYERS = 500;

export interface ContainerPaths {
  id: string;
  containerDir: string;
  upper: string;
  work: string;
  merged: string;
}

export interface OverlayPlan {
  /** The `-o` argument for mount(8). */
  options: string;
  /** Working directory for mount(8); relative lower dirs are resolved against it. */
  cwd?: string;
  /** Short links to create first: name in `<store>/l` → target directory. */
  links: { name: string; target: string }[];
}

/** 64 random hex characters, like a Docker container id. */
export function newContainerId(): string {
  return randomBytes(32).toString('hex');
}

export function containerPaths(store: Store, id: string): ContainerPaths {
  const containerDir = store.containerDir(id);
  return { id, containerDir, upper: join(containerDir, 'upper'), work: join(containerDir, 'work'), merged: join(containerDir, 'merged') };
}

/** The short link name of a layer directory: stable, so every mount of a layer shares one link. */
export function shortLinkName(target: string): string {
  return createHash('sha256').update(resolve(target)).digest('hex').slice(0, 26);
}

const UNSAFE_IN_OPTION = /[,:\\\s]/;

/**
 * Plans the mount options for `lowerDirs` (bottom layer first). Absolute paths
 * when they fit in a page; short links relative to `<store>/l` otherwise.
 */
export function planOverlay(store: Store, lowerDirs: string[], paths: ContainerPaths, forceLinks = false): OverlayPlan {
  const top = [...lowerDirs].reverse().map((dir) => resolve(dir));
  const direct = `lowerdir=${top.join(':')},upperdir=${paths.upper},workdir=${paths.work}`;
  const unsafe = [...top, paths.upper, paths.work].some((p) => UNSAFE_IN_OPTION.test(p));
  if (!forceLinks && !unsafe && direct.length <= MOUNT_OPTIONS_LIMIT) return { options: direct, links: [] };
  const linksDir = store.linksDir;
  const links = top.map((target) => ({ name: shortLinkName(target), target }));
  const upper = relative(linksDir, paths.upper);
  const work = relative(linksDir, paths.work);
  const options = `lowerdir=${links.map((l) => l.name).join(':')},upperdir=${upper},workdir=${work}`;
  if (UNSAFE_IN_OPTION.test(upper) || UNSAFE_IN_OPTION.test(work)) {
    throw new ConveyorError('ERR_MOUNT_FAILED', `container directory ${paths.containerDir} has a character overlay options cannot hold`, {
      hint: 'use a store root (--root) whose path has no comma, colon, backslash or whitespace',
    });
  }
  if (options.length > MOUNT_OPTIONS_LIMIT) {
    throw new ConveyorError('ERR_MOUNT_FAILED', `${lowerDirs.length} layers do not fit in the kernel's mount option page even with short links`, {
      hint: 'flatten the image with layer-unpack --flatten',
    });
  }
  return { options, cwd: linksDir, links };
}

/** Creates (or confirms) `<store>/l/<name>` → target; atomic, safe to race. */
async function ensureLink(storeRoot: string, linksDir: string, name: string, target: string): Promise<void> {
  const path = join(linksDir, name);
  // Relative inside the store (it may move), absolute outside it.
  const inStore = relative(resolve(storeRoot), target);
  const want = inStore.startsWith('..') || isAbsolute(inStore) ? target : relative(linksDir, target);
  try {
    if ((await readlink(path)) === want) return;
  } catch {
    // missing: create below
  }
  const temp = join(linksDir, `.${name}.${randomBytes(6).toString('hex')}`);
  await symlink(want, temp);
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

function run(cmd: string, args: string[], cwd?: string): Promise<{ code: number; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { cwd, encoding: 'utf8' }, (error, _stdout, stderr) => {
      const code = error ? (typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : 127) : 0;
      done({ code, stderr: stderr || (error && code === 127 ? String(error.message) : '') });
    });
  });
}

export interface MountOverlayOptions {
  /** Container id; a new random one by default. */
  id?: string;
  /** Always use short links (tests; deep stores). */
  forceLinks?: boolean;
}

/**
 * Creates `<store>/containers/<id>/{upper,work,merged}` and mounts overlayfs on
 * merged with `lowerDirs` (bottom first) below it. On failure nothing is left
 * mounted and the container directory is removed. The lower dirs are mounted
 * as given: take them from a record only through trustedLowerDirs.
 */
export async function mountOverlay(store: Store, lowerDirs: string[], options: MountOverlayOptions = {}): Promise<ContainerPaths> {
  if (lowerDirs.length === 0) throw new ConveyorError('ERR_INPUT_RECORD', 'no layer directories to mount');
  if (lowerDirs.length > MAX_LOWER_LAYERS) {
    throw new ConveyorError('ERR_MOUNT_FAILED', `${lowerDirs.length} layers exceed overlayfs's limit of ${MAX_LOWER_LAYERS}`, { hint: 'flatten the image with layer-unpack --flatten' });
  }
  for (const dir of lowerDirs) {
    if (typeof dir !== 'string' || !isAbsolute(dir)) throw new ConveyorError('ERR_INPUT_RECORD', `layer directory is not an absolute path: ${JSON.stringify(dir)}`);
    let info;
    try {
      info = await stat(dir);
    } catch {
      throw new ConveyorError('ERR_MOUNT_FAILED', `layer directory ${dir} does not exist`, { hint: 'unpack the image first: layer-unpack' });
    }
    if (!info.isDirectory()) throw new ConveyorError('ERR_MOUNT_FAILED', `layer path ${dir} is not a directory`, { hint: 'unpack the image again with layer-unpack' });
  }
  const id = options.id ?? newContainerId();
  const paths = containerPaths(store, id);
  const plan = planOverlay(store, lowerDirs, paths, options.forceLinks);
  await store.tighten();
  // A running container's upper and merged dirs hold the image's setuid files
  // as much as its layers do: containers/ and containers/<id> are owner-only,
  // whatever the store root's mode.
  await mkdirClosed(store.containersDir);
  await mkdir(paths.containerDir, { mode: 0o700 });
  try {
    await chmod(paths.containerDir, 0o700);
    // upper becomes the mode of / inside the container (merged is covered by
    // the mount): 0755 so non-root users in the container can use /, chmod'ed
    // because a umask such as 027 would mask mkdir's mode.
    await Promise.all([mkdir(paths.upper, { mode: 0o755 }), mkdir(paths.work, { mode: 0o700 }), mkdir(paths.merged, { mode: 0o755 })]);
    await Promise.all([chmod(paths.upper, 0o755), chmod(paths.merged, 0o755)]);
    if (plan.links.length > 0) {
      await mkdirClosed(store.linksDir);
      for (const link of plan.links) await ensureLink(store.root, store.linksDir, link.name, link.target);
    }
    // Uptime has 10 ms steps and the two clocks drift a little: allow a margin.
    const since = uptimeMicros() - 100_000;
    const result = await run('mount', ['-t', 'overlay', 'overlay', '-o', plan.options, paths.merged], plan.cwd);
    if (result.code !== 0) throw mountError(result, paths.merged, since);
    return paths;
  } catch (error) {
    await rm(paths.containerDir, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
}

function mountError(result: { code: number; stderr: string }, target: string, since: number): ConveyorError {
  if (result.code === 127) {
    return new ConveyorError('ERR_MOUNT_FAILED', `cannot run mount(8): ${result.stderr.trim()}`, { hint: 'install util-linux' });
  }
  const kernel = readKernelLog((m) => /^overlay(fs)?:/.test(m), 1, since)[0];
  const tool = result.stderr.split('\n')[0].replace(/^mount: /, '').trim();
  const reason = kernel ?? tool;
  let hint = 'check the layer directories and that the store is not on overlayfs itself';
  if (/permission denied|must be superuser|operation not permitted/i.test(result.stderr)) hint = 'mounting overlays needs root (or CAP_SYS_ADMIN)';
  else if (/unknown filesystem type/i.test(result.stderr)) hint = 'load the overlay kernel module: modprobe overlay';
  else if (/upper fs does not support|not supported as upperdir/i.test(reason)) hint = 'put the store on a filesystem overlayfs supports as upper (ext4, xfs)';
  return new ConveyorError('ERR_MOUNT_FAILED', `overlay mount on ${target} failed: ${reason}`, { hint, details: { mountStderr: result.stderr.trim(), kernel } });
}

/** Decodes mountinfo's octal escapes (`\040` for a space). */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points of this mount namespace, from /proc/self/mountinfo. */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => unescapeMountPath(line.split(' ')[4]));
}

/** Mount points at or below `dir`. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const base = resolve(dir);
  return (await mountPoints()).filter((p) => p === base || p.startsWith(base + '/'));
}

/**
 * Unmounts everything at or below the container's merged dir and removes the
 * container directory. Refuses to remove the directory while anything below it
 * is still mounted. Missing directories are not an error (idempotent).
 */
export async function removeContainer(store: Store, id: string, options: { keepDir?: boolean } = {}): Promise<void> {
  const paths = containerPaths(store, id);
  const mounted = (await mountsUnder(paths.containerDir)).sort((a, b) => b.length - a.length);
  for (const point of mounted) {
    const result = await run('umount', [point]);
    if (result.code !== 0) {
      const busy = /busy/i.test(result.stderr);
      throw new ConveyorError('ERR_MOUNT_FAILED', `unmount of ${point} failed: ${result.stderr.split('\n')[0].replace(/^umount: /, '').trim()}`, {
        hint: busy ? 'a process still uses the container filesystem; stop it first (fuser -vm ' + point + ')' : 'check with findmnt ' + point,
      });
    }
  }
  const left = await mountsUnder(paths.containerDir);
  if (left.length > 0) throw new ConveyorError('ERR_MOUNT_FAILED', `still mounted after unmount: ${left.join(', ')}`);
  if (!options.keepDir) await rm(paths.containerDir, { recursive: true, force: true });
}

/**
 * The store a record belongs to (its own `store` field, else `root`), checked
 * before any path in it is trusted: absolute and normalised, and safe by
 * assertTrustedStore (only root, or the caller, can change it or its parents;
 * no symlink on the way). A store named by a record that fails the check is
 * ERR_INPUT_RECORD; the --root store fails with ERR_STORE_UNSAFE. The store is
 * then closed to other users (warning through options.warn when it was open).
 */
export async function trustedRecordStore(record: Record<string, unknown>, root: string, options: StoreOptions = {}): Promise<Store> {
  const named = record.store;
  if (named !== undefined && (typeof named !== 'string' || !isAbsolute(named) || normalize(named) !== named || (named.endsWith('/') && named !== '/'))) {
    throw new ConveyorError('ERR_INPUT_RECORD', `store is not a normalised absolute path: ${JSON.stringify(named)}`);
  }
  const path = named === undefined ? resolve(root) : named;
  try {
    await assertTrustedStore(path);
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
  throw new ConveyorError('ERR_INPUT_RECORD', message, { hint: hint ?? 'use records produced by layer-unpack and overlay-mount for this store' });
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
      info = await lstat(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        if (!mustExist) return;
        if (what.startsWith('layer')) throw new ConveyorError('ERR_MOUNT_FAILED', `${what} ${path} does not exist`, { hint: 'unpack the image first: layer-unpack' });
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
export async function assertLayerDir(store: Store, dir: unknown): Promise<TrustedLayer> {
  if (typeof dir !== 'string') refuse(`layer directory is not a string: ${JSON.stringify(dir)}`);
  const match = /^layers\/([a-f0-9]{64})\/diff$/.exec(relative(store.root, dir));
  if (!isAbsolute(dir) || !match || dir !== join(store.root, 'layers', match[1], 'diff')) {
    refuse(`layer directory ${JSON.stringify(dir)} is not ${join(store.root, 'layers', '<64 hex>', 'diff')}`, 'lower layers come only from the store\'s layers/; run the record through layer-unpack');
  }
  await assertRealDirsUnder(store, dir, 'layer directory');
  const metaPath = join(store.root, 'layers', match[1], 'meta.json');
  let meta: unknown;
  try {
    // O_NOFOLLOW: a meta.json symlink is not layer-unpack's.
    const handle = await open(metaPath, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
    try {
      const info = await handle.stat();
      if (!info.isFile() || info.size > MAX_META_BYTES) throw new Error('not a small regular file');
      meta = JSON.parse(await handle.readFile('utf8'));
    } finally {
      await handle.close();
    }
  } catch (error) {
    refuse(`layer directory ${dir} has no valid meta.json (${(error as Error).message}): not a layer unpacked by layer-unpack`, 'unpack the image again: layer-unpack');
  }
  const m = meta as { chainID?: unknown; diffID?: unknown; parentChainID?: unknown } | null;
  if (
    !m ||
    typeof m !== 'object' ||
    m.chainID !== `sha256:${match[1]}` ||
    typeof m.diffID !== 'string' ||
    !/^sha256:[a-f0-9]{64}$/.test(m.diffID) ||
    !(m.parentChainID === undefined || m.parentChainID === null || (typeof m.parentChainID === 'string' && /^sha256:[a-f0-9]{64}$/.test(m.parentChainID)))
  ) {
    refuse(`layer directory ${dir}: meta.json does not describe chain ${match[1].slice(0, 12)}`, 'unpack the image again: layer-unpack');
  }
  return { dir, chainID: m.chainID, parentChainID: m.parentChainID as string | null | undefined };
}

/** What assertLayerDir vouches for: the directory and the chain its meta.json names. */
export interface TrustedLayer {
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
      throw new ConveyorError('ERR_MOUNT_FAILED', `${layerDirs.length} layers exceed overlayfs's limit of ${MAX_LOWER_LAYERS}`, { hint: 'flatten the image with layer-unpack --flatten' });
    }
    // Each layer must sit on the one it was unpacked over (meta.json's parentChainID, written by
    // layer-unpack since chain IDs are recomputed): a record cannot stack stored layers of
    // different images, or reorder one image's. Metas from before the field are not checked.
    let below: string | null = null;
    for (const dir of layerDirs) {
      const meta = await assertLayerDir(store, dir);
      if (meta.parentChainID !== undefined && meta.parentChainID !== below) {
        refuse(`layer directory ${dir} was unpacked over ${meta.parentChainID ?? 'nothing'}, not ${below ?? 'nothing'}`, 'give the layers of one image, bottom first, as layer-unpack lists them');
      }
      below = meta.chainID;
    }
    return layerDirs as string[];
  }
  const dir = (record as { dir?: unknown }).dir;
  if (dir === undefined) refuse('rootfs record has neither layerDirs nor dir', 'produce it with layer-unpack');
  if (typeof dir !== 'string' || !isAbsolute(dir) || normalize(dir) !== dir) refuse(`rootfs record: dir is not a normalised absolute path: ${JSON.stringify(dir)}`);
  let info;
  try {
    info = await lstat(dir);
  } catch {
    throw new ConveyorError('ERR_MOUNT_FAILED', `flattened rootfs ${dir} does not exist`, { hint: 'unpack it again: layer-unpack --flatten DIR' });
  }
  if (info.isSymbolicLink()) refuse(`rootfs record: dir ${dir} is a symlink`, 'give the directory itself');
  if (!info.isDirectory()) refuse(`rootfs record: dir ${dir} is not a directory`);
  if (!(await isRegisteredFlattened(store, dir))) {
    refuse(`rootfs record: dir ${dir} was not flattened by layer-unpack for the store ${store.root}`, 'a dir is accepted only as layer-unpack --flatten DIR registered it in the store; flatten the image again');
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
  if (typeof id !== 'string' || !/^[a-f0-9]{64}$/.test(id)) refuse(`mount record: not a container id: ${JSON.stringify(id)}`);
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
    if (value !== want) refuse(`mount record: ${field} ${JSON.stringify(value)} is not ${want}`, 'mount records come from overlay-mount; the paths follow from the id');
  }
  await assertRealDirsUnder(store, paths.merged, 'container directory', options.mustExist ?? true);
  return paths;
}
