/**
 * `img-export --rootfs`: the flat filesystem of a container or an image as a
 * tar stream (what `docker export` writes), whiteouts applied by overlayfs.
 * A container (id, name or unique prefix) is read through its merged dir,
 * derived from its id (never from state.json's paths), which must be mounted.
 * An image is mounted as an overlay of its unpacked layer dirs (the top layer
 * first, as the kernel wants) in a throwaway container dir, packed, and
 * unmounted; its layers must have been unpacked by layer-unpack
 * (ERR_IMAGE_NOT_FOUND with the hint otherwise).
 *
 * Entries keep their numeric owners, modes and mtimes; symlinks stay links;
 * hard links come out as separate files; devices, fifos and sockets are left
 * out (tar-fs packs none of them), as are xattrs and file capabilities.
 */
import { createWriteStream } from 'node:fs';
import { access, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { resolveContainer } from '@conveyor/lib-common/container/state';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readStoredImage } from '@conveyor/lib-common/image';
import { withLease } from '@conveyor/lib-common/lease';
import { lookupLocalImage } from '@conveyor/lib-common/local-image';
import { containerPaths, mountOverlay, mountsUnder, removeContainer } from '@conveyor/lib-common/overlay/mount';
import type { Store } from '@conveyor/lib-common/store';
import tar from 'tar-fs';

/** Packs the tree at `dir` (owners, modes and mtimes as they are; `.` left out). */
export async function packRootfs(dir: string, out: Writable): Promise<void> {
  const packer = tar.pack(dir, {
    umask: 0,
    strict: false,
    sort: true,
    ignore: () => false,
    map: (header) => ({ ...header, uname: '', gname: '' }),
  });
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
  if (!(await mountsUnder(merged)).includes(merged)) {
    throw new ConveyorError('ERR_MOUNT_NOT_FOUND', `container ${entry.id.slice(0, 12)} has no mounted filesystem`, {
      hint: 'its overlay goes with it when it ends: export a running container, or the image',
    });
  }
  await packRootfs(merged, out);
}
