/**
 * Volumes: directories of the store that outlive the containers mounting
 * them, in Docker's layout.
 *
 *   volumes/<name>/_data       what the container sees at the mount path
 *   volumes/<name>/meta.json   VolumeMeta: name, createdAt, anonymous, the container that made it
 *
 * A named volume (`-v NAME:/path`, `--mount type=volume`) is created on first
 * use; an anonymous one (an image VOLUME no flag covers) has a 64-hex name and
 * belongs to the container that made it, which removes it with `--rm` or
 * `ctr-rm -v` (never a named one: Docker's rule). A volume that is empty when
 * mounted is seeded with the image's content at the mount path (Docker's
 * copy-up), owners, modes, xattrs, symlinks and hardlinks kept; the image is
 * hostile, so the source is resolved inside the rootfs (resolveInRoot) and
 * symlinks are copied as links, never followed. Which containers use a volume
 * is read from their state.json (`volumes`).
 *
 * Failure: ERR_USAGE for a malformed name, ERR_VOLUME_NOT_FOUND for a volume
 * that does not exist, ERR_SPAWN_FAILED when the image's path is not a
 * directory or the copy fails, ERR_STORE_CORRUPT for an unreadable meta.json.
 * Creation is idempotent under the volume's lock; a volume dir without
 * meta.json (a crash mid-create) is completed by the next create.
 */
import { constants, existsSync, readdirSync } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomHex } from '../digest.js';
import { ConveyorError } from '../errors.js';
import { RECORD_VERSION } from '../records.js';
import { withLock } from '../lock.js';
import { isContainerId, mkdirClosed, mkdirClosedTop, type Store } from '../store.js';
import { resolveInRoot } from './rootfs.js';
import { listContainers, observe } from './state.js';

/** Docker's volume name rule (at least two characters); an anonymous volume's name is 64 hex. */
export const VOLUME_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}$/;
const ANONYMOUS_NAME = /^[0-9a-f]{64}$/;
export const VOLUME_DATA = '_data';
const META_FILE = 'meta.json';

export interface VolumeMeta {
  name: string;
  createdAt: string;
  anonymous: boolean;
  /** The container that created it (an anonymous volume belongs to it). */
  container?: string;
}

export interface VolumeInfo extends VolumeMeta {
  /** The host directory mounted into containers (`_data`). */
  mountpoint: string;
}

export function isVolumeName(name: unknown): name is string {
  return typeof name === 'string' && VOLUME_NAME.test(name);
}

function checkName(name: string): void {
  if (!isVolumeName(name)) {
    throw new ConveyorError('ERR_USAGE', `invalid volume name ${JSON.stringify(name)}`, {
      hint: 'a volume name is 2 to 255 of [a-zA-Z0-9_.-], starting with a letter or digit',
    });
  }
}

export function volumesDir(store: Store): string {
  return join(store.root, 'volumes');
}

/** The directory of a volume; the name is checked, so a record cannot aim it elsewhere. */
export function volumeDir(store: Store, name: string): string {
  checkName(name);
  return join(volumesDir(store), name);
}

export function volumeDataDir(store: Store, name: string): string {
  return join(volumeDir(store, name), VOLUME_DATA);
}

/** The volume a mount source names, when it is a volume's `_data` in this store (state.json, spec mounts). */
export function volumeOfSource(store: Store, source: string): string | undefined {
  const prefix = `${volumesDir(store)}/`;
  if (!source.startsWith(prefix)) return undefined;
  const parts = source.slice(prefix.length).split('/');
  return parts.length === 2 && parts[1] === VOLUME_DATA && isVolumeName(parts[0]) ? parts[0] : undefined;
}

export function newAnonymousName(): string {
  return randomHex(32);
}

async function readMeta(store: Store, name: string): Promise<VolumeMeta | undefined> {
  const path = join(volumeDir(store, name), META_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw error;
  }
  try {
    const meta = JSON.parse(text) as VolumeMeta;
    if (meta && typeof meta === 'object' && meta.name === name && typeof meta.createdAt === 'string') return { ...meta, anonymous: meta.anonymous === true };
  } catch {
    // reported below
  }
  throw new ConveyorError('ERR_STORE_CORRUPT', `${path} is not the metadata of volume ${name}`, { hint: `remove it with vol-rm -f ${name}` });
}

function infoOf(store: Store, meta: VolumeMeta): VolumeInfo {
  return { ...meta, mountpoint: volumeDataDir(store, meta.name) };
}

/** Creates a volume unless it exists (idempotent, under its lock). Resolves to it and whether this call created it. */
export async function createVolume(
  store: Store,
  name: string,
  options: { anonymous?: boolean; container?: string; now?: Date } = {},
): Promise<{ volume: VolumeInfo; created: boolean }> {
  checkName(name);
  await mkdirClosedTop(volumesDir(store));
  return withLock(store.lockPath(`volume-${name}`), async () => {
    const existing = await readMeta(store, name);
    if (existing) return { volume: infoOf(store, existing), created: false };
    const dir = volumeDir(store, name);
    await mkdirClosed(dir);
    // _data is container content (a non-root container user must reach it, as in Docker's 0755);
    // the volume's own directory stays closed, so no other host user can.
    // A directory without meta.json is a create that crashed: completed here.
    await mkdir(join(dir, VOLUME_DATA), { mode: 0o755 }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    await chmod(join(dir, VOLUME_DATA), 0o755);
    const meta: VolumeMeta = {
      name,
      createdAt: (options.now ?? new Date()).toISOString(),
      anonymous: options.anonymous === true,
      ...(options.container ? { container: options.container } : {}),
    };
    await store.writeFileAtomic(join(dir, META_FILE), `${JSON.stringify(meta)}\n`);
    return { volume: infoOf(store, meta), created: true };
  });
}

/** One volume, or ERR_VOLUME_NOT_FOUND. */
export async function getVolume(store: Store, name: string): Promise<VolumeInfo> {
  const meta = await readMeta(store, name);
  if (!meta) throw new ConveyorError('ERR_VOLUME_NOT_FOUND', `no such volume: ${name}`, { hint: 'list volumes with vol-ls' });
  return infoOf(store, meta);
}

/** Every volume of the store, by name; entries that are not volumes are skipped (warned about). */
export async function listVolumes(store: Store, options: { warn?: (message: string) => void } = {}): Promise<VolumeInfo[]> {
  const names = await readdir(volumesDir(store)).catch(() => [] as string[]);
  const volumes: VolumeInfo[] = [];
  for (const name of names.sort()) {
    if (!isVolumeName(name)) continue;
    try {
      const meta = await readMeta(store, name);
      if (meta) volumes.push(infoOf(store, meta));
    } catch (error) {
      options.warn?.((error as Error).message);
    }
  }
  return volumes;
}

/**
 * The containers using each volume, from their state.json (`volumes`), plus
 * the creator of an anonymous volume while its directory exists (a container
 * killed before it wrote its state still owns it).
 */
export async function volumeUsers(store: Store): Promise<Map<string, string[]>> {
  const users = new Map<string, string[]>();
  const add = (name: string, id: string) => {
    const ids = users.get(name) ?? [];
    if (!ids.includes(id)) ids.push(id);
    users.set(name, ids);
  };
  for (const entry of await listContainers(store)) {
    const names = entry.state ? observe(entry.state).volumes : undefined;
    if (Array.isArray(names)) for (const name of names) if (isVolumeName(name)) add(name, entry.id);
  }
  for (const volume of await listVolumes(store)) {
    if (volume.anonymous && isContainerId(volume.container) && existsSync(store.containerDir(volume.container))) add(volume.name, volume.container);
  }
  return users;
}

/** Removes a volume and its content. The caller decides whether a volume in use may go (vol-rm -f). */
export async function removeVolume(store: Store, name: string): Promise<void> {
  const dir = volumeDir(store, name);
  await withLock(store.lockPath(`volume-${name}`), async () => {
    const info = await lstat(dir).catch(() => undefined);
    if (!info) throw new ConveyorError('ERR_VOLUME_NOT_FOUND', `no such volume: ${name}`, { hint: 'list volumes with vol-ls' });
    await rm(dir, { recursive: true, force: true });
  });
}

/**
 * Removes the anonymous volumes container `id` created (its --rm, ctr-rm -v),
 * except one another container mounts too (`-v <its name>:/path`, as Docker
 * keeps a volume in use). Resolves to the names removed.
 */
export async function removeAnonymousVolumes(store: Store, id: string): Promise<string[]> {
  // Most stores hold no anonymous volume: one synchronous look at the names spares every run's clean-up
  // the metadata reads (and a foreground run's its only trips through libuv's thread pool).
  if (!hasAnonymousVolumes(store)) return [];
  const own = (await listVolumes(store)).filter((v) => v.anonymous && v.container === id && ANONYMOUS_NAME.test(v.name));
  if (own.length === 0) return [];
  const users = await volumeUsers(store);
  const removed: string[] = [];
  for (const volume of own) {
    if ((users.get(volume.name) ?? []).some((user) => user !== id)) continue;
    await removeVolume(store, volume.name).catch(() => undefined);
    removed.push(volume.name);
  }
  return removed;
}

/** Whether any volume has an anonymous volume's name (64 hex); false when there is no volumes/ to read. */
function hasAnonymousVolumes(store: Store): boolean {
  try {
    return readdirSync(volumesDir(store)).some((name) => ANONYMOUS_NAME.test(name));
  } catch {
    return false;
  }
}

/**
 * Docker's copy-up: when the volume's `_data` is empty, the image's content at
 * `path` (resolved inside `rootfs`, never outside) is copied into it with
 * `cp -a` (owners, modes, xattrs, hardlinks; symlinks as links). Nothing when
 * the image has nothing there. Resolves to whether anything was copied.
 */
export async function seedVolume(rootfs: string, path: string, data: string): Promise<boolean> {
  if ((await readdir(data)).length > 0) return false;
  const source = await resolveInRoot(rootfs, path);
  const info = await lstat(source).catch(() => undefined);
  if (!info) return false;
  if (!info.isDirectory()) {
    throw new ConveyorError('ERR_SPAWN_FAILED', `cannot mount a volume at ${path}: it is not a directory in the image`, {
      hint: 'a volume mounts over a directory; choose another container path',
    });
  }
  // cp reads the directory opened here (its stdin, /proc/self/fd/0), not the path: a component
  // swapped for a symlink after the check (a container sharing a mount record's overlay) cannot
  // point the copy at a host directory.
  const dir = await open(source, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(() => undefined);
  if (!dir) throw new ConveyorError('ERR_SPAWN_FAILED', `cannot mount a volume at ${path}: it changed while being read`);
  try {
    // Loaded here: child_process (with net, dgram and stream) is only for seeding and --size, not vol-ls's listing.
    const { runProcess } = await import('../subprocess.js');
    const result = await runProcess('cp', ['-a', '--no-dereference', '--', '/proc/self/fd/0/.', `${data}/`], { stdin: dir.fd });
    if (result.failed)
      throw new ConveyorError('ERR_SPAWN_FAILED', `seeding the volume at ${path} from the image: ${String(result.stderr).trim() || result.shortMessage}`);
  } finally {
    await dir.close();
  }
  return true;
}

/** Bytes under a volume's `_data` (`du -s`, vol-ls --size); undefined when du fails. */
export async function volumeSize(store: Store, name: string): Promise<number | undefined> {
  const { runProcess } = await import('../subprocess.js');
  const result = await runProcess('du', ['-s', '-B1', '--', volumeDataDir(store, name)]);
  if (result.failed) return undefined;
  const bytes = Number(String(result.stdout).split(/\s/)[0]);
  return Number.isFinite(bytes) ? bytes : undefined;
}

/** The `volume` record vol-ls prints and vol-rm reads (by name only). */
export interface VolumeRecord {
  type: 'volume';
  v: number;
  name: string;
  anonymous: boolean;
  createdAt: string;
  /** The host directory containers see (`_data`). */
  mountpoint: string;
  /** Full ids of the containers (running or stopped) that use it. */
  usedBy: string[];
  store: string;
  /** Bytes under `_data` (vol-ls --size). */
  size?: number;
}

export function volumeRecordOf(store: Store, info: VolumeInfo, usedBy: string[], size?: number): VolumeRecord {
  return {
    type: 'volume',
    v: RECORD_VERSION,
    name: info.name,
    anonymous: info.anonymous,
    createdAt: info.createdAt,
    mountpoint: info.mountpoint,
    usedBy,
    store: store.root,
    ...(size !== undefined ? { size } : {}),
  };
}
