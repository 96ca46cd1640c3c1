/**
 * An image's history as `docker history` shows it: the config's `history`
 * entries, newest first, each joined with the layer it made (empty_layer
 * entries made none). The config is hostile: entries that are not objects or
 * fields of the wrong type are read as absent, never trusted as they are; an
 * image without history (or whose history does not account for its layers)
 * gets one synthesised entry per layer, as Docker does. Pure: never throws.
 */
import type { ImageConfigBlob, ImageManifest } from './image.js';
import { RECORD_VERSION } from './records.js';

export interface HistoryRecord {
  type: 'history';
  v: typeof RECORD_VERSION;
  /** The image's reference, as its image record names it. */
  ref: string;
  /** The layer's digest (the blob), absent for an empty layer. */
  layer?: string;
  created?: string;
  createdBy: string;
  author?: string;
  comment: string;
  /** The layer's size (unpacked when known, else compressed); 0 for an empty layer. */
  size: number;
  emptyLayer: boolean;
}

interface RawEntry {
  created?: unknown;
  created_by?: unknown;
  author?: unknown;
  comment?: unknown;
  empty_layer?: unknown;
}

const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

/**
 * The history records, newest first. `layerSizes[i]` is layer i's size
 * (bottom first); the entries that are not empty layers take the layers in order.
 */
export function historyRecords(ref: string, manifest: ImageManifest, config: ImageConfigBlob, layerSizes: number[]): HistoryRecord[] {
  const raw: RawEntry[] = Array.isArray(config.history)
    ? config.history.map((e) => (e && typeof e === 'object' && !Array.isArray(e) ? (e as RawEntry) : {}))
    : [];
  const withLayers = raw.filter((e) => e.empty_layer !== true).length;
  // A history that does not account for every layer cannot be joined with them: one entry per layer instead.
  const entries: RawEntry[] = withLayers === manifest.layers.length ? raw : manifest.layers.map(() => ({}));
  let layer = 0;
  const records = entries.map((entry): HistoryRecord => {
    const emptyLayer = entry.empty_layer === true;
    const record: HistoryRecord = {
      type: 'history',
      v: RECORD_VERSION,
      ref,
      createdBy: text(entry.created_by) ?? '',
      comment: text(entry.comment) ?? '',
      size: 0,
      emptyLayer,
    };
    const created = text(entry.created);
    if (created) record.created = created;
    const author = text(entry.author);
    if (author) record.author = author;
    if (!emptyLayer) {
      record.layer = manifest.layers[layer].digest;
      record.size = layerSizes[layer] ?? manifest.layers[layer].size;
      layer++;
    }
    return record;
  });
  return records.reverse();
}
