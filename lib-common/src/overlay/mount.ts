/**
 * Overlay mounts of image layers, shared by overlay-mount and ctr-spawn.
 *
 * A container directory `<store>/containers/<id>/` holds `upper/`, `work/`
 * and `merged/`; overlayfs is mounted on `merged/` with the layer directories
 * as lower dirs (the top layer first in the option, as the kernel wants).
 *
 * mount(2) copies its option string into one page (4096 bytes), so an image
 * with many layers in a deep store overflows it. As Docker's overlay2 does, the
 * layers are then named by short links `<store>/l/<12 hex>` → layer dir and
 * the `mount` binary runs with cwd `<store>/l`, so the option holds only the
 * short relative names. The same path is taken when a path holds a character
 * the option syntax cannot carry (`,` `:` `\`, whitespace).
 *
 * Node has no mount syscall: mount and umount are util-linux binaries. A failed
 * mount is reported as ERR_MOUNT_FAILED with the kernel's own reason, read from
 * the kernel log when it is readable.
 *
 * Rootless (inside the user's namespace: lib-common/rootless) the drivers of
 * driver.ts are tried in order: kernel overlayfs with `userxattr`, then
 * fuse-overlayfs, then a copy of the layers bind-mounted on merged (copy.ts);
 * the one that worked is returned as `driver`. Every driver leaves a mount on
 * merged, so unmounting (umount, which also ends a fuse-overlayfs daemon) and
 * finding what is mounted work the same for all.
 *
 * The lower dirs given here are trusted: paths from a record come through
 * record-paths.ts first.
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdir as rmdirCallback, rmdirSync, statSync, unlink as unlinkCallback } from 'node:fs';
import { chmod, lstat, mkdir, readdir, readFile, readlink, rename, rm, rmdir, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { digestHex, randomHex, sha256 } from '../digest.js';
import { ConveyorError } from '../errors.js';
import { readKernelLog, uptimeMicros } from '../kmsg.js';
import { runProcess, type SubprocessResult } from '../subprocess.js';
import { FUSE_LOWERDIRS_FILE, mkdirClosed, mkdirClosedTop, type Store } from '../store.js';
import { copyLayers } from './copy.js';
import { driverOrder, type OverlayDriver } from './driver.js';

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
  return randomHex(32);
}

export function containerPaths(store: Store, id: string): ContainerPaths {
  const containerDir = store.containerDir(id);
  return { id, containerDir, upper: join(containerDir, 'upper'), work: join(containerDir, 'work'), merged: join(containerDir, 'merged') };
}

/**
 * The short link name of a layer directory: stable, so every mount of a layer shares one link. 12 hex
 * (48 bits: no collision among a store's layers) rather than Docker's 26 characters, so a 200-layer
 * image fits the page (13 bytes a layer: about 280 layers; the kernel stacks at most 500).
 */
export function shortLinkName(target: string): string {
  return digestHex(sha256(resolve(target))).slice(0, 12);
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
  const temp = join(linksDir, `.${name}.${randomHex(6)}`);
  await symlink(want, temp);
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** The overlay as an OCI runtime mounts it: the spec's first mount, on "/", over an empty root.path. */
export interface RuntimeRootMount {
  destination: '/';
  type: 'overlay';
  source: 'overlay';
  options: string[];
}

/** Whether this kernel's overlayfs takes `volatile` (Linux 5.10 and later), from a release string (os.release()). */
export function volatileSupported(release: string): boolean {
  const match = /^(\d+)\.(\d+)/.exec(release);
  if (!match) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return major > 5 || (major === 5 && minor >= 10);
}

/**
 * The overlay of `lowerDirs` (bottom first) on `paths` as a mount the OCI runtime makes itself inside
 * the container's mount namespace (runc mounts a first mount on "/" onto root.path before pivot_root):
 * the options mountContainerRoot gives mount(8) for kernel overlayfs, one per element (the runtime joins
 * them with commas). Undefined when the plan needs what only a mount here can do: short links resolved
 * against a working directory (many layers, a path overlay options cannot hold). The paths are the
 * caller's, derived from the store: never from a record.
 */
export function runtimeRootMount(
  store: Store,
  lowerDirs: string[],
  paths: ContainerPaths,
  options: { volatile: boolean; release: string },
): RuntimeRootMount | undefined {
  const plan = planOverlay(store, lowerDirs, paths);
  if (plan.cwd !== undefined || plan.links.length > 0) return undefined;
  const parts = plan.options.split(',');
  return {
    destination: '/',
    type: 'overlay',
    source: 'overlay',
    options: options.volatile && volatileSupported(options.release) ? [...parts, 'volatile'] : parts,
  };
}

export interface MountOverlayOptions {
  /** Container id; a new random one by default. */
  id?: string;
  /** Always use short links (tests; deep stores). */
  forceLinks?: boolean;
  /** We run rootless (inside the user's namespace): `userxattr`, and the fallback drivers. */
  rootless?: boolean;
  /** The driver to use and no other (CONVEYOR_OVERLAY_DRIVER). */
  driver?: OverlayDriver;
  /** Told when a driver failed and the next one is tried. */
  onFallback?: (failed: OverlayDriver, reason: string) => void;
  /**
   * The root is thrown away with the container (ctr-spawn's own overlay of a
   * rootfs record): kernel overlayfs gets `volatile`, so no sync of the upper
   * filesystem, at unmount or when the container syncs, waits on a disk
   * whose data is about to be deleted. A kernel without it (before 5.10)
   * gets the mount without.
   */
  volatile?: boolean;
}

/** A mounted container root: its paths and the driver that made it. */
export interface MountedOverlay extends ContainerPaths {
  driver: OverlayDriver;
}

/** Refuses lower dirs overlayfs cannot stack: none, too many, relative, missing or not directories. */
export async function checkLowerDirs(lowerDirs: string[]): Promise<void> {
  if (lowerDirs.length === 0) throw new ConveyorError('ERR_INPUT_RECORD', 'no layer directories to mount');
  if (lowerDirs.length > MAX_LOWER_LAYERS) {
    throw new ConveyorError('ERR_MOUNT_FAILED', `${lowerDirs.length} layers exceed overlayfs's limit of ${MAX_LOWER_LAYERS}`, {
      hint: 'flatten the image with layer-unpack --flatten',
    });
  }
  for (const dir of lowerDirs) {
    if (typeof dir !== 'string' || !isAbsolute(dir))
      throw new ConveyorError('ERR_INPUT_RECORD', `layer directory is not an absolute path: ${JSON.stringify(dir)}`);
  }
  // Synchronous stats: microseconds each on the layers' cached directories, where each asynchronous one is a
  // trip through libuv's thread pool (a run's start waits for them; a deep image's layers are many).
  for (const dir of lowerDirs) {
    let info;
    try {
      info = statSync(dir);
    } catch {
      throw new ConveyorError('ERR_MOUNT_FAILED', `layer directory ${dir} does not exist`, { hint: 'unpack the image first: layer-unpack' });
    }
    if (!info.isDirectory())
      throw new ConveyorError('ERR_MOUNT_FAILED', `layer path ${dir} is not a directory`, { hint: 'unpack the image again with layer-unpack' });
  }
}

/**
 * Creates `<store>/containers/<id>/{upper,work,merged}`, owner-only, with
 * nothing mounted yet: what a caller that works in the directory while the
 * root is mounted (ctr-spawn's network namespace) needs first. Fails with
 * nothing made (an existing directory is never taken over nor removed).
 */
export async function makeContainerDir(store: Store, paths: ContainerPaths): Promise<void> {
  await store.tighten();
  // A running container's upper and merged dirs hold the image's setuid files
  // as much as its layers do: containers/ and containers/<id> are owner-only,
  // whatever the store root's mode.
  // containers/ is made when the first mkdir finds it missing, not looked for on every run.
  // Synchronous calls: the directories are made in one parent, whose lock serialises them anyway,
  // and seven calls cost less than their trips through libuv's thread pool.
  try {
    mkdirSync(paths.containerDir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await mkdirClosedTop(store.containersDir);
    mkdirSync(paths.containerDir, { mode: 0o700 });
  }
  try {
    // upper becomes the mode of / inside the container (merged is covered by
    // the mount): 0755 so non-root users in the container can use /, chmod'ed
    // because a umask such as 027 would mask mkdir's mode. The container
    // directory is chmod'ed too: a umask can only have narrowed its 0700.
    chmodSync(paths.containerDir, 0o700);
    mkdirSync(paths.upper, { mode: 0o755 });
    mkdirSync(paths.work, { mode: 0o700 });
    mkdirSync(paths.merged, { mode: 0o755 });
    chmodSync(paths.upper, 0o755);
    chmodSync(paths.merged, 0o755);
  } catch (error) {
    await rm(paths.containerDir, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
}

/**
 * Mounts the root of `paths` (made by makeContainerDir) with `lowerDirs`
 * below it, trying the drivers in order; resolves to the one that worked.
 * A failure leaves the directory, unmounted, to the caller.
 */
export async function mountContainerRoot(store: Store, lowerDirs: string[], paths: ContainerPaths, options: MountOverlayOptions = {}): Promise<OverlayDriver> {
  await checkLowerDirs(lowerDirs);
  const plan = planOverlay(store, lowerDirs, paths, options.forceLinks);
  if (plan.links.length > 0) {
    await mkdirClosed(store.linksDir);
    for (const link of plan.links) await ensureLink(store.root, store.linksDir, link.name, link.target);
  }
  const drivers = driverOrder(Boolean(options.rootless), options.driver);
  for (const [index, driver] of drivers.entries()) {
    try {
      await mountWith(driver, lowerDirs, plan, paths, Boolean(options.rootless), Boolean(options.volatile));
      return driver;
    } catch (error) {
      if (index === drivers.length - 1) throw error;
      options.onFallback?.(driver, (error as Error).message);
      // What a failed attempt left (a copy's files, fuse-overlayfs's work dir) is not the next one's.
      await Promise.all([paths.upper, paths.work].map((d) => rm(d, { recursive: true, force: true })));
      await Promise.all([mkdir(paths.upper, { mode: 0o755 }), mkdir(paths.work, { mode: 0o700 })]);
      await chmod(paths.upper, 0o755);
    }
  }
  throw new ConveyorError('ERR_MOUNT_FAILED', 'no overlay driver to try');
}

/**
 * Creates `<store>/containers/<id>/{upper,work,merged}` and mounts overlayfs on
 * merged with `lowerDirs` (bottom first) below it. On failure nothing is left
 * mounted and the container directory is removed. The lower dirs are mounted
 * as given: take them from a record only through trustedLowerDirs.
 */
export async function mountOverlay(store: Store, lowerDirs: string[], options: MountOverlayOptions = {}): Promise<MountedOverlay> {
  await checkLowerDirs(lowerDirs);
  const id = options.id ?? newContainerId();
  const paths = containerPaths(store, id);
  planOverlay(store, lowerDirs, paths, options.forceLinks); // a plan that cannot be made fails before anything is
  await makeContainerDir(store, paths);
  try {
    return { ...paths, driver: await mountContainerRoot(store, lowerDirs, paths, options) };
  } catch (error) {
    await rm(paths.containerDir, { recursive: true, force: true }).catch(() => undefined);
    throw error;
  }
}

/** Mounts the container root on merged with one driver; throws ERR_MOUNT_FAILED with its reason. */
async function mountWith(
  driver: OverlayDriver,
  lowerDirs: string[],
  plan: OverlayPlan,
  paths: ContainerPaths,
  rootless: boolean,
  volatile: boolean,
): Promise<void> {
  if (driver === 'overlay') {
    // Uptime has 10 ms steps and the two clocks drift a little: allow a margin.
    const since = uptimeMicros() - 100_000;
    // userxattr: in a user namespace overlayfs keeps its opaque and redirect marks in user.overlay.* (trusted.* needs real root).
    const data = rootless ? `userxattr,${plan.options}` : plan.options;
    const mount = (options: string) => runProcess('mount', ['-t', 'overlay', 'overlay', '-o', options, paths.merged], { cwd: plan.cwd });
    let result = await mount(volatile ? `${data},volatile` : data);
    // An older kernel refuses the option it does not know: mounted without, the root only costs its syncs.
    if (result.failed && volatile) result = await mount(data);
    if (result.failed) throw mountError(result, paths.merged, since, rootless);
    return;
  }
  if (driver === 'fuse-overlayfs') {
    // mountinfo shows no lowerdir for a FUSE mount: img-prune (gc.ts mountedChains) reads the layers in use from here.
    await writeFile(join(paths.containerDir, FUSE_LOWERDIRS_FILE), JSON.stringify(lowerDirs.map((dir) => resolve(dir))), { mode: 0o600 });
    // It forks a daemon that serves the mount (stdio on /dev/null) once the mount is made; umount ends it.
    const result = await runProcess('fuse-overlayfs', ['-o', plan.options, paths.merged], { cwd: plan.cwd });
    if (result.failed) {
      const why =
        result.code !== undefined
          ? `cannot run fuse-overlayfs: ${result.originalMessage ?? result.shortMessage}`
          : `fuse-overlayfs on ${paths.merged} failed: ${result.stderr.trim().split('\n').at(-1) || result.shortMessage}`;
      throw new ConveyorError('ERR_MOUNT_FAILED', why, {
        hint: result.code === 'ENOENT' ? 'install fuse-overlayfs' : 'fuse-overlayfs needs /dev/fuse readable and writable by you',
      });
    }
    return;
  }
  await copyLayers(lowerDirs, paths.upper);
  const result = await runProcess('mount', ['--bind', paths.upper, paths.merged]);
  if (result.failed) {
    throw new ConveyorError('ERR_MOUNT_FAILED', `bind mount of the copied root on ${paths.merged} failed: ${result.stderr.trim() || result.shortMessage}`);
  }
}

function mountError(result: SubprocessResult, target: string, since: number, rootless = false): ConveyorError {
  // Only a mount(8) that could not start is "cannot run" (an exit status of 127 from mount itself is its own failure).
  if (result.code !== undefined) {
    return new ConveyorError('ERR_MOUNT_FAILED', `cannot run mount(8): ${result.originalMessage ?? result.shortMessage}`, { hint: 'install util-linux' });
  }
  const kernel = readKernelLog((m) => /^overlay(fs)?:/.test(m), 1, since)[0];
  const tool = result.stderr
    .split('\n')[0]
    .replace(/^mount: /, '')
    .trim();
  const reason = kernel ?? tool;
  let hint = 'check the layer directories and that the store is not on overlayfs itself';
  if (rootless) hint = 'overlayfs in a user namespace needs Linux 5.11 or later; CONVEYOR_OVERLAY_DRIVER=fuse-overlayfs or copy avoids it';
  else if (/permission denied|must be superuser|operation not permitted/i.test(result.stderr)) hint = 'mounting overlays needs root (or CAP_SYS_ADMIN)';
  else if (/unknown filesystem type/i.test(result.stderr)) hint = 'load the overlay kernel module: modprobe overlay';
  else if (/upper fs does not support|not supported as upperdir/i.test(reason)) hint = 'put the store on a filesystem overlayfs supports as upper (ext4, xfs)';
  return new ConveyorError('ERR_MOUNT_FAILED', `overlay mount on ${target} failed: ${reason}`, {
    hint,
    details: { mountStderr: result.stderr.trim(), kernel },
  });
}

/** Decodes mountinfo's octal escapes (`\040` for a space). */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

const MOUNTINFO = '/proc/self/mountinfo';

function mountPointsOf(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => unescapeMountPath(line.split(' ')[4]));
}

/** Mount points of this mount namespace, from /proc/self/mountinfo. */
async function mountPoints(): Promise<string[]> {
  return mountPointsOf(await readFile(MOUNTINFO, 'utf8'));
}

function under(points: string[], dir: string): string[] {
  const base = resolve(dir);
  return points.filter((p) => p === base || p.startsWith(base + '/'));
}

/** Mount points at or below `dir`. */
export async function mountsUnder(dir: string): Promise<string[]> {
  return under(await mountPoints(), dir);
}

/**
 * mountsUnder read with one readFileSync: a procfs file of a few kilobytes, read in four calls that
 * each cost a trip through libuv's thread pool when read asynchronously (issue 17: ctr-spawn's exit).
 */
export function mountsUnderSync(dir: string): string[] {
  return under(mountPointsOf(readFileSync(MOUNTINFO, 'utf8')), dir);
}

/**
 * Unmounts everything at or below the container's merged dir and removes the
 * container directory. Refuses to remove the directory while anything below it
 * is still mounted. Missing directories are not an error (idempotent).
 */
export async function removeContainer(store: Store, id: string, options: { keepDir?: boolean; trash?: boolean; sync?: boolean } = {}): Promise<void> {
  const paths = containerPaths(store, id);
  const mountedNow = () => (options.sync ? Promise.resolve(mountsUnderSync(paths.containerDir)) : mountsUnder(paths.containerDir));
  let mounted = (await mountedNow()).sort((a, b) => b.length - a.length);
  // Nothing mounted (the runtime mounted the root in its own namespace): no unmount, no second look.
  const unmounting = mounted.length > 0;
  // One umount(8) for them all (the root and a network namespace file: one process, not one each);
  // whatever it could not unmount is tried again one by one below, for the reason.
  if (mounted.length > 1 && !(await runProcess('umount', mounted)).failed) mounted = [];
  else if (mounted.length > 1) mounted = (await mountedNow()).sort((a, b) => b.length - a.length);
  for (const point of mounted) {
    const result = await runProcess('umount', [point]);
    if (result.failed) {
      const busy = /busy/i.test(result.stderr);
      const said = result.stderr
        .split('\n')[0]
        .replace(/^umount: /, '')
        .trim();
      const why = result.code !== undefined ? (result.originalMessage ?? result.shortMessage) : said || result.shortMessage;
      throw new ConveyorError('ERR_MOUNT_FAILED', `unmount of ${point} failed: ${why}`, {
        hint: busy ? 'a process still uses the container filesystem; stop it first (fuser -vm ' + point + ')' : 'check with findmnt ' + point,
      });
    }
  }
  const left = unmounting ? await mountedNow() : [];
  if (left.length > 0) throw new ConveyorError('ERR_MOUNT_FAILED', `still mounted after unmount: ${left.join(', ')}`);
  if (options.keepDir) return;
  if (options.trash && (await moveToTrash(store, paths.containerDir, id))) return;
  // A run's own small directory in a few rounds (sync: the caller has nothing else to do); a big tree side by side.
  await (options.sync ? removeRunDir(paths.containerDir) : removeTree(paths.containerDir));
}

/**
 * Trash: a removed container's directory, unmounted, renamed to `<store>/tmp/trash-<id>` and deleted
 * later (sweepTrash), so that a run's exit does not wait for it: on ext4 with online discard each
 * freed directory block is discarded before rmdir(2) returns. tmp/ is on the containers' filesystem
 * (both in the store) and seen by no tool as a container (ctr-ls, ctr-rm, gc and img-fsck look in
 * containers/). A crash leaves a directory that the next sweep removes: nothing in it is kept.
 */
const TRASH = /^trash-[0-9a-f]{64}$/;

/** Renames `containerDir` into the trash; false when it cannot (another filesystem, an error): then remove it in place. */
async function moveToTrash(store: Store, containerDir: string, id: string): Promise<boolean> {
  const target = join(store.tmpDir, `trash-${id}`);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await rename(containerDir, target);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) return false;
      // Gone already (removal is idempotent), or no tmp/ yet: made closed, as the store's other dirs.
      if (!(await stat(containerDir).catch(() => undefined))) return true;
      await mkdirClosed(store.tmpDir).catch(() => undefined);
    }
  }
  return false;
}

/**
 * Deletes what is in the trash (moveToTrash): each entry that is a real directory with nothing mounted
 * below it (never followed through a symlink, never into a mount). Safe beside another sweep (a tree
 * removed by both is removed). Resolves to what it could not remove; never throws. `remove` replaces
 * the removal of one trash dir (gc reports what it frees through it).
 */
export async function sweepTrash(store: Store, remove: (dir: string) => Promise<void> = removeRunDir): Promise<string[]> {
  let names: string[];
  try {
    // Synchronous: usually empty, and a run that read its record from a file waits for this look at its end.
    names = readdirSync(store.tmpDir).filter((name) => TRASH.test(name));
  } catch {
    return [];
  }
  if (names.length === 0) return [];
  const mounts = await mountPoints().catch(() => undefined);
  const left: string[] = [];
  await Promise.all(
    names.map(async (name) => {
      const dir = join(store.tmpDir, name);
      const busy = mounts === undefined || mounts.some((p) => p === dir || p.startsWith(`${dir}/`));
      if (busy || !(await lstat(dir).catch(() => undefined))?.isDirectory()) return void left.push(dir);
      await remove(dir).catch(() => left.push(dir));
    }),
  );
  return left;
}

/**
 * Removes a directory tree with nothing mounted in it, every directory's entries at once: on ext4
 * with online discard (and no journal) each freed directory block is discarded before rmdir(2)
 * returns (1-2 ms), so a container directory's half-dozen directories cost far less side by side
 * than in turn; and a readdir's entry types spare rm's lstat and failed rmdir per entry. Whatever
 * this cannot remove (an entry type the filesystem does not report, a race) is left to rm.
 */
export async function removeTree(dir: string): Promise<void> {
  try {
    await removeEntries(dir);
  } catch {
    // rm finishes it (force: a directory already gone is no error). Not a return on ENOENT: that may be an entry
    // below that vanished meanwhile, with the rest of the tree still there.
    await rm(dir, { recursive: true, force: true });
  }
}

/** A run's directory (a container's, or one in the trash): removeSmallTree, or removeTree when it is not small. */
async function removeRunDir(dir: string): Promise<void> {
  if (!(await removeSmallTree(dir))) await removeTree(dir);
}

/**
 * node:fs's callback unlink and rmdir, promisified: removeSmallTree is a foreground run's only user of file
 * operations that overlap, and node:fs/promises, which the bundle loads on first use, is a few ms of module loading
 * there (issue 17); node:util is loaded with Node itself.
 */
const unlinkQueued = promisify(unlinkCallback);
const rmdirQueued = promisify(rmdirCallback);

/** Above this many entries a tree is removed by removeTree, whose removals overlap. */
const SMALL_TREE_ENTRIES = 64;

/**
 * Removes a small directory tree (at most SMALL_TREE_ENTRIES entries) with nothing mounted in it, a
 * freshly run container's directory (its bundle files, the upper dir's name files, overlayfs's
 * work/work/incompat/volatile), in few rounds whatever its depth: listed synchronously (readdir's
 * entry types: never a symlink followed; no thread-pool trip per level), its files unlinked all at
 * once, every directory below the top renamed to a direct child of it (renames free no block) and all
 * of them removed at once, then the top. On ext4 with online discard each freed block waits for the
 * disk: removed level by level, or one by one in sync calls, those waits add up (measured on a busy
 * disk: 14 ms in sync calls, 5 ms level by level, 4.4 ms so; on a quiet one 2.2, 3.4 and 2.7 ms).
 * False, with nothing removed, for a tree that is not small (removeTree then); true once it is gone,
 * or gone already. A failure half-way is finished by rm.
 */
export async function removeSmallTree(dir: string): Promise<boolean> {
  const files: string[] = [];
  const dirs: string[] = [];
  const list = (path: string): boolean => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      if (files.length + dirs.length >= SMALL_TREE_ENTRIES) return false;
      const child = join(path, entry.name);
      if (entry.isDirectory()) {
        if (!list(child)) return false;
      } else files.push(child);
    }
    dirs.push(path); // after its entries: the deepest first
    return true;
  };
  try {
    if (!list(dir)) return false;
  } catch (error) {
    const { code, path } = error as NodeJS.ErrnoException;
    return code === 'ENOENT' && path === dir;
  }
  // Each round settled whole before the next (or rm): nothing races a removal still under way.
  const settled = async (work: Promise<unknown>[]) => {
    const failed = (await Promise.allSettled(work)).find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
  };
  try {
    await settled(files.map((file) => unlinkQueued(file)));
    const below = dirs.slice(0, -1);
    // Deepest first, so a directory's path still holds when its turn comes: each becomes an empty child of the top.
    const flat = below.map((path, index) => {
      if (dirname(path) === dir) return path;
      const target = join(dir, `.removing-${index}`);
      renameSync(path, target);
      return target;
    });
    await settled(flat.map((path) => rmdirQueued(path)));
    rmdirSync(dir); // the last one: nothing to wait beside it
  } catch {
    await rm(dir, { recursive: true, force: true });
  }
  return true;
}

async function removeEntries(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  const removed = await Promise.allSettled(
    entries.map((entry) => (entry.isDirectory() ? removeEntries(join(dir, entry.name)) : unlink(join(dir, entry.name)))),
  );
  // All settled first: rm must not race removals still under way.
  const failed = removed.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  await rmdir(dir);
}
