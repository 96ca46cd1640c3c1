/**
 * `img-export --rootfs`: the flat filesystem of a container or an image as a
 * tar stream (what `docker export` writes), whiteouts applied by overlayfs.
 * A container (id, name or unique prefix) is read through its merged dir,
 * derived from its id (never from state.json's paths), when it is mounted
 * here; a running container whose overlay the runtime mounted (ctr-spawn's
 * foreground runs: in the container's mount namespace only) is read through
 * its init's /proc/PID/root (lib-common container/exec containerRoot: the pid
 * checked against its start time), without what is mounted over its root
 * there (/proc, /dev, /sys, volumes: their mount points stay, empty).
 * An image is mounted as an overlay of its unpacked layer dirs (the top layer
 * first, as the kernel wants) in a throwaway container dir, packed, and
 * unmounted; its layers must have been unpacked by layer-unpack
 * (ERR_IMAGE_NOT_FOUND with the hint otherwise).
 *
 * Entries keep their numeric owners, modes and mtimes; symlinks stay links;
 * hard links come out as separate files; devices, fifos and sockets are left
 * out (tar-fs packs none of them), as are xattrs and file capabilities.
 */
import * as fs from 'node:fs';
import { createWriteStream } from 'node:fs';
import { access, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { containerRoot } from '@conveyor/lib-common/container/exec';
import { isRunning, resolveContainer } from '@conveyor/lib-common/container/state';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readStoredImage } from '@conveyor/lib-common/image';
import { withLease } from '@conveyor/lib-common/lease';
import { lookupLocalImage } from '@conveyor/lib-common/local-image';
import { containerPaths, mountOverlay, mountsUnder, removeContainer } from '@conveyor/lib-common/overlay/mount';
import type { Store } from '@conveyor/lib-common/store';
import tar from 'tar-fs';

/** Packs the tree at `dir` (owners, modes and mtimes as they are; `.` left out), nothing below the mount points `skip` (absolute, under dir). */
export async function packRootfs(dir: string, out: Writable, skip: string[] = []): Promise<void> {
  // The top is followed (/proc/PID/root is a link to the process's root); nothing below it is.
  const lstat = ((path: string, callback: (err: NodeJS.ErrnoException | null, stats: fs.Stats) => void) =>
    (path === dir ? fs.stat : fs.lstat)(path, callback)) as typeof fs.lstat;
  // tar-fs takes an fs of our own (its `fs` option), which its types do not list.
  const options = {
    fs: { ...fs, lstat },
    umask: 0,
    strict: false,
    sort: true,
    ignore: (name: string) => skip.some((point) => name.startsWith(`${point}/`)),
    map: (header: Record<string, unknown>) => ({ ...header, uname: '', gname: '' }),
  };
  const packer = tar.pack(dir, options as Parameters<typeof tar.pack>[1]);
  await pipeline(packer, out);
}

async function unpackedLowerDirs(store: Store, query: string, chainIDs: string[]): Promise<string[]> {
  const dirs = chainIDs.map((chainID) => join(store.layerDir(chainID), 'diff'));
  for (const [i, dir] of dirs.entries()) {
    const present = await access(join(store.layerDir(chainIDs[i]), 'meta.json')).then(
      () => access(dir).then(() => true),
      () => false,
    );
    if (!present) {
      throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `the layers of ${query} are not unpacked in ${store.root}`, {
        hint: `run img-ls ${query} | layer-unpack first`,
      });
    }
  }
  return dirs;
}

/** Writes the rootfs of the image or container `query` (an image name wins, as docker's lookup order has no overlap). */
export async function exportRootfs(store: Store, query: string, output: Writable | string): Promise<void> {
  if (typeof output !== 'string') return writeRootfs(store, query, output);
  // Through FILE.tmp, renamed once complete: a failure leaves no half-written FILE.
  const temp = `${output}.tmp`;
  try {
    await writeRootfs(store, query, createWriteStream(temp, { mode: 0o644 }));
    await rename(temp, output);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

async function writeRootfs(store: Store, query: string, out: Writable): Promise<void> {
  const local = await lookupLocalImage(store, query, { byDigest: true }).catch(() => undefined);
  if (local) {
    await withLease(store, async () => {
      const { record } = await readStoredImage(store, local.entry);
      const lowerDirs = await unpackedLowerDirs(
        store,
        query,
        record.layers.map((layer) => layer.chainID),
      );
      const paths = await mountOverlay(store, lowerDirs);
      try {
        await packRootfs(paths.merged, out);
      } finally {
        await removeContainer(store, paths.id);
      }
    });
    return;
  }
  const entry = await resolveContainer(store, query);
  const { merged } = containerPaths(store, entry.id);
  if ((await mountsUnder(merged)).includes(merged)) return packRootfs(merged, out);
  const notMounted = new ConveyorError('ERR_MOUNT_NOT_FOUND', `container ${entry.id.slice(0, 12)} has no mounted filesystem`, {
    hint: 'its overlay goes with it when it ends: export a running container, or the image',
  });
  if (!entry.state || !isRunning(entry.state)) throw notMounted;
  const root = await containerRoot(store, entry.state).catch(() => {
    throw notMounted;
  });
  await packRootfs(root, out, await mountPointsIn(root));
}

/** The mount points of the process whose root is `root` (/proc/PID/root), as host paths under it; its root itself left out. */
async function mountPointsIn(root: string): Promise<string[]> {
  const text = await readFile(join(root, '..', 'mountinfo'), 'utf8');
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point !== undefined && point !== '/')
    .map((point) =>
      join(
        root,
        point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8))),
      ),
    );
}
