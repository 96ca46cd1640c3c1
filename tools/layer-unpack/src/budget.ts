/**
 * Inflate budgets. `--max-bytes` and `--max-entries` bound one layer; an
 * image's layers together are bound by `--max-image-bytes` and
 * `--max-image-entries`, so an image of a hundred layers, each just under the
 * per-layer cap, cannot fill the disk (ERR_LAYER_TOO_LARGE).
 *
 * The Applier reads its `maxBytes`/`maxEntries` options at every entry (a
 * file's declared size is checked before a byte of it is written), so we hand
 * it getters: each evaluation subtracts what the image's other layers have
 * unpacked by then, while the Applier's own count covers the layer itself.
 * Layers unpacking in parallel see each other's progress at most
 * SNAPSHOT_MS late (later when reading it is slow, see ImageBudget.others);
 * that slack is all they can overshoot by, and the sum check after the last
 * layer (ImageBudget.check) is exact.
 */
import { ConveyorError, isConveyorError } from '@conveyor/lib-common/errors';

export interface Usage {
  /** File content bytes. */
  bytes: number;
  /** Tar entries. */
  entries: number;
}

export interface Caps {
  maxBytes: number;
  maxEntries: number;
}

/** The Applier options that bound a layer, plus which cap bound it at the last look. */
export interface LayerLimits extends Caps {
  /** True when the image budget, not the per-layer cap, gave the last value read. */
  readonly imageBound: boolean;
}

const ZERO: Usage = { bytes: 0, entries: 0 };

/** How stale the view of parallel layers' progress may be. */
const SNAPSHOT_MS = 20;
/** Reading progress (Applier.stats) walks the layer's tree: spend at most 1/SNAPSHOT_COST_SHARE of the time on it. */
const SNAPSHOT_COST_SHARE = 20;

/**
 * Limits for one layer. `offset` is what the Applier had already counted when
 * the layer began (flat mode reuses one Applier for all layers; per-layer
 * mode starts each at zero); `others` is what the image's other layers use.
 */
export function layerLimits(perLayer: Caps, image: Caps, offset: () => Usage, others: () => Usage = () => ZERO): LayerLimits {
  let imageBound = false;
  const pick = (layerCap: number, imageCap: number): number => {
    imageBound = imageCap < layerCap;
    return Math.min(layerCap, imageCap);
  };
  return {
    get maxBytes() {
      return pick(offset().bytes + perLayer.maxBytes, image.maxBytes - others().bytes);
    },
    get maxEntries() {
      return pick(offset().entries + perLayer.maxEntries, image.maxEntries - others().entries);
    },
    get imageBound() {
      return imageBound;
    },
  };
}

/**
 * `base` plus live `maxBytes`/`maxEntries` properties reading `limits`. A
 * spread would copy the values once; the Applier must see them change.
 */
export function withLimits<T extends object>(base: T, limits: Caps): T & Caps {
  return Object.defineProperties(base, {
    maxBytes: { get: () => limits.maxBytes, enumerable: true },
    maxEntries: { get: () => limits.maxEntries, enumerable: true },
  }) as T & Caps;
}

/** The Applier's message names the room left for this layer; say that the image's total is what ran out. */
export function explainTooLarge(error: unknown, limits: LayerLimits, image: Caps): unknown {
  if (!isConveyorError(error) || error.code !== 'ERR_LAYER_TOO_LARGE' || !limits.imageBound) return error;
  return imageTooLarge(`${error.message}: the image's layers together may unpack at most ${image.maxBytes} bytes in ${image.maxEntries} entries`);
}

export function imageTooLarge(message: string): ConveyorError {
  return new ConveyorError('ERR_LAYER_TOO_LARGE', message, { hint: 'raise --max-image-bytes or --max-image-entries if the image is really this large' });
}

/**
 * What one image's layers have unpacked. A layer counts once per image
 * whether this run unpacked it, found it in the store or waited for another
 * image's unpack of it: the image's size, not this run's work, is bounded,
 * so the outcome does not depend on what the cache held.
 */
export class ImageBudget {
  private readonly settled = new Map<string, Usage>();
  /** The sum over `settled`, kept so that each look costs O(layers unpacking), not O(layers). */
  private settledTotal: Usage = { bytes: 0, entries: 0 };
  /** Layers unpacking now: how to read their progress, and the last reading. */
  private readonly live = new Map<string, { read: () => Usage; last?: Usage; at: number; interval: number }>();

  constructor(readonly caps: Caps) {}

  /** Counts a layer's usage while it unpacks; returns the function that stops counting it. */
  watch(chainID: string, read: () => Usage): () => void {
    const entry = { read, at: 0, interval: SNAPSHOT_MS };
    this.live.set(chainID, entry);
    return () => {
      if (this.live.get(chainID) === entry) this.live.delete(chainID);
    };
  }

  /** A layer of this image is complete, with its final usage (from its meta.json). */
  settle(chainID: string, usage: Usage): void {
    const old = this.settled.get(chainID) ?? ZERO;
    this.settled.set(chainID, { bytes: usage.bytes, entries: usage.entries });
    this.settledTotal = { bytes: this.settledTotal.bytes - old.bytes + usage.bytes, entries: this.settledTotal.entries - old.entries + usage.entries };
  }

  /** What the image's layers other than `chainID` have unpacked so far. */
  others(chainID: string): Usage {
    const own = this.settled.get(chainID) ?? ZERO;
    let bytes = this.settledTotal.bytes - own.bytes;
    let entries = this.settledTotal.entries - own.entries;
    for (const [chain, layer] of this.live) {
      if (chain === chainID || this.settled.has(chain)) continue;
      const now = Date.now();
      if (!layer.last || now - layer.at > layer.interval) {
        layer.last = layer.read();
        layer.at = now;
        // Applier.stats() costs time in proportion to the layer's tree: back off so
        // that watching a huge layer does not slow the others down.
        layer.interval = Math.max(SNAPSHOT_MS, (Date.now() - now) * SNAPSHOT_COST_SHARE);
      }
      bytes += layer.last.bytes;
      entries += layer.last.entries;
    }
    return { bytes, entries };
  }

  /** Throws ERR_LAYER_TOO_LARGE when the settled layers pass the caps. */
  check(what: string): void {
    const { bytes, entries } = this.settledTotal;
    if (bytes > this.caps.maxBytes || entries > this.caps.maxEntries) {
      throw imageTooLarge(
        `${what}: its ${this.settled.size} layers unpack to ${bytes} bytes in ${entries} entries; the limit is ${this.caps.maxBytes} bytes in ${this.caps.maxEntries} entries`,
      );
    }
  }
}
