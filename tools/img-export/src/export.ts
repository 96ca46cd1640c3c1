/**
 * img-export's run: the images named (arguments or stdin records) are found
 * and read under a store lease (a prune waits), their archive tree is built in
 * the store's tmp/ and packed to stdout or FILE, or renamed to DIR for
 * oci-dir. Any image that cannot be found or read is reported and nothing is
 * written (a partial bundle would load as if complete); the exit code is the
 * first failure's. The temporary tree is always removed.
 */
import { cp, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { ConveyorError, EXIT, toConveyorError } from '@conveyor/lib-common/errors';
import { eachLocalImage } from '@conveyor/lib-common/image-input';
import { withLease } from '@conveyor/lib-common/lease';
import type { ReferenceItem } from '@conveyor/lib-common/reference-input';
import { mkdirClosed, type Store } from '@conveyor/lib-common/store';
import { packToFile, packTree } from './pack.js';
import { buildTree, type ExportImage } from './tree.js';

export interface ExportOptions {
  format: 'docker' | 'oci' | 'oci-dir';
  /** FILE or DIR; stdout when absent. */
  output?: string;
  stdout: Writable;
  error: (error: ConveyorError) => void;
  info: (message: string) => void;
}

export async function exportImages(store: Store, items: AsyncIterable<ReferenceItem> | Iterable<ReferenceItem>, options: ExportOptions): Promise<number> {
  if (options.format === 'oci-dir' && options.output) {
    const taken = await stat(options.output).then(
      () => true,
      () => false,
    );
    if (taken)
      throw new ConveyorError('ERR_USAGE', `${options.output} exists`, { hint: '--format oci-dir writes a new directory: name one that does not exist' });
  }
  return withLease(store, async () => {
    const images: ExportImage[] = [];
    const code = await eachLocalImage(store, items, {
      onImage: async (image) => {
        images.push({ record: image.record, manifest: image.manifest, names: image.local.reference.digest ? [] : [image.local.name] });
      },
      // stdout is the archive: another tool's record has nowhere to go.
      write: async () => undefined,
      error: options.error,
    });
    if (code !== EXIT.OK) return code;
    if (images.length === 0) throw new ConveyorError('ERR_USAGE', 'no image to export', { hint: 'name an image or pipe img-ls into img-export' });
    await mkdirClosed(store.tmpDir);
    const dir = await mkdtemp(join(store.tmpDir, 'export-'));
    try {
      const tree = await buildTree(store, images, options.format === 'docker' ? 'docker' : 'oci', dir);
      if (options.format === 'oci-dir') {
        // Copied, not moved: the tree hard-links the store's blobs, which a layout edited in place must not reach.
        const target = resolve(options.output as string);
        await cp(dir, `${target}.tmp`, { recursive: true });
        await rename(`${target}.tmp`, target).catch(async (error) => {
          await rm(`${target}.tmp`, { recursive: true, force: true });
          throw toConveyorError(error);
        });
        options.info(`wrote ${images.length} image(s) to ${options.output}`);
        return EXIT.OK;
      }
      if (options.output) await packToFile(dir, tree.entries, options.output);
      else await packTree(dir, tree.entries, options.stdout);
      if (options.output) options.info(`wrote ${images.length} image(s) to ${options.output}`);
      return EXIT.OK;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
