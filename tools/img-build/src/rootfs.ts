/**
 * A writable root for one filesystem step: an overlay of the stage's
 * unpacked layers with a fresh upper dir (lib-common's mountOverlay, what
 * overlay-mount and ctr-spawn use), in `<store>/containers/<id>/`.
 *
 * Layers made earlier in this build are not unpacked again: the upper dir
 * of the step that made a layer is that layer in overlay form (whiteouts
 * as 0/0 devices, opaque dirs by xattr), so it serves as the lower dir of
 * later steps, as buildah and Docker stack their snapshots (`made`, by
 * chain ID). Other layers (the base image's, cache hits) come from
 * `<store>/layers/`; the missing ones are unpacked first by piping their
 * `layer` records into `layer-unpack` (it verifies each blob's diff ID). A
 * stage without layers (FROM scratch) mounts an empty lower dir.
 *
 * Rootless (inside the user's namespace keeper), the overlay is kernel
 * overlayfs with `userxattr` or fuse-overlayfs (lib-common/overlay/driver);
 * the `copy` driver is refused: its upper dir holds the whole tree, so what a
 * step deleted could not be told from what it kept.
 *
 * The caller removes the container (removeContainer) whatever happens.
 */
import { readFile, mkdir, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { chainIDs } from '@conveyor/lib-common/digest';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { OverlayDriver } from '@conveyor/lib-common/overlay/driver';
import { mountOverlay, newContainerId, removeContainer, type ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import { RECORD_VERSION } from '@conveyor/lib-common/records';
import { mkdirClosed, type Store } from '@conveyor/lib-common/store';
import type { BuildState } from './cache.js';
import type { ToolRunner } from './tools.js';

export interface LayerDirsOptions {
  store: Store;
  runner: ToolRunner;
  /** layer-unpack flags: --root, --log-format. */
  unpackArgs: string[];
  onStderr: (chunk: Buffer) => void;
  /** Names the image in the layer records (messages only). */
  ref: string;
  /** Upper dirs of the steps of this build that made a layer, by the layer's chain ID. */
  made?: Map<string, string>;
  /** Rootless: mount inside the user's namespace (userxattr, fuse-overlayfs); `driver`: CONVEYOR_OVERLAY_DRIVER. */
  rootless?: boolean;
  driver?: OverlayDriver;
}

/** The dirs of the state's layers, bottom first: this build's upper dirs, else unpacked ones (layer-unpack runs for the missing). */
export async function layerDirs(state: BuildState, options: LayerDirsOptions): Promise<string[]> {
  const { store } = options;
  const diffIDs = state.config.rootfs?.diff_ids ?? [];
  const chains = chainIDs(diffIDs);
  const made = options.made ?? new Map<string, string>();
  const dirs = chains.map((chain) => made.get(chain) ?? join(store.layerDir(chain), 'diff'));
  const present = await Promise.all(chains.map((chain, i) => made.has(chain) || isUnpacked(store, chain, diffIDs[i])));
  if (present.every(Boolean)) return dirs;
  const records = state.layers.flatMap((layer, index) =>
    present[index]
      ? []
      : [
          {
            type: 'layer',
            v: RECORD_VERSION,
            ref: options.ref,
            index,
            count: state.layers.length,
            mediaType: layer.mediaType,
            digest: layer.digest,
            size: layer.size,
            diffID: diffIDs[index],
            chainID: chains[index],
            ...(index > 0 ? { parentChainID: chains[index - 1] } : {}),
            store: store.root,
          },
        ],
  );
  const input = records.map((r) => JSON.stringify(r)).join('\n') + '\n';
  const child = options.runner.start('layer-unpack', options.unpackArgs, { input, stdout: 'ignore', stderr: 'pipe', buffer: false });
  child.stderr?.on('data', (chunk: Buffer) => options.onStderr(chunk));
  const result = await child.result;
  if (result.failed) {
    throw new ConveyorError('ERR_LAYER_INVALID', `unpacking the layers of ${options.ref} failed: ${result.shortMessage}`, {
      hint: "see layer-unpack's message above",
    });
  }
  for (let i = 0; i < chains.length; i++) {
    if (!present[i] && !(await isUnpacked(store, chains[i], diffIDs[i])))
      throw new ConveyorError('ERR_LAYER_INVALID', `layer ${state.layers[i].digest} of ${options.ref} is not unpacked after layer-unpack`);
  }
  return dirs;
}

/** Whether layer-unpack's dir for `chain` is complete: its meta.json names this chain and diff ID. */
async function isUnpacked(store: Store, chain: string, diffID: string): Promise<boolean> {
  try {
    const meta = JSON.parse(await readFile(join(store.layerDir(chain), 'meta.json'), 'utf8')) as { chainID?: string; diffID?: string };
    return meta.chainID === chain && meta.diffID === diffID;
  } catch {
    return false;
  }
}

/** An empty directory in the store: the lower dir of a stage without layers (overlayfs needs one). */
async function emptyLower(store: Store): Promise<string> {
  const dir = join(store.tmpDir, 'img-build-empty');
  await mkdirClosed(store.tmpDir);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  return dir;
}

/** Mounts the stage's layers plus a fresh upper dir; returns the container paths (`merged` is the root). */
export async function mountStage(state: BuildState, options: LayerDirsOptions): Promise<ContainerPaths> {
  const copyRefused = () =>
    new ConveyorError('ERR_MOUNT_FAILED', "img-build cannot build on the copy driver: a step's deletions would be lost", {
      hint: 'rootless builds need kernel overlayfs (Linux 5.11+) or fuse-overlayfs (docs/rootless.md)',
    });
  if (options.driver === 'copy') throw copyRefused();
  const lowers = state.layers.length > 0 ? await layerDirs(state, options) : [await emptyLower(options.store)];
  const mounted = await mountOverlay(options.store, lowers, { id: newContainerId(), rootless: options.rootless, driver: options.driver });
  if (mounted.driver === 'copy') {
    await removeContainer(options.store, mounted.id);
    throw copyRefused();
  }
  return mounted;
}
