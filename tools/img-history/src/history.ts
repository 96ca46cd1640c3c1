/**
 * One local image's `history` records (lib-common/image-history), with each
 * layer's unpacked size read from its blob's gzip trailer (the compressed
 * size where that is unknown). Library code; never throws once the image is
 * read (lib-common/image-input did that, and validated it).
 */
import { layerUnpackedSize } from '@conveyor/lib-common/image';
import { historyRecords, type HistoryRecord } from '@conveyor/lib-common/image-history';
import type { LocalImageFound } from '@conveyor/lib-common/image-input';
import type { Store } from '@conveyor/lib-common/store';

export async function historyOf(store: Store, image: LocalImageFound): Promise<HistoryRecord[]> {
  const sizes: number[] = [];
  for (const layer of image.manifest.layers) sizes.push((await layerUnpackedSize(store, layer)) ?? layer.size);
  return historyRecords(image.record.ref, image.manifest, image.config, sizes);
}
