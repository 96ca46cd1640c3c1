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
  private readonly live = new Map<string, () => Usage>();
  private snapshot?: { at: number; total: Usage; per: Map<string, Usage> };
  /** Wait at least this long between snapshots taken while layers unpack. */
  private interval = SNAPSHOT_MS;

  constructor(readonly caps: Caps) {}

  /** Counts a layer's usage while it unpacks; returns the function that stops counting it. */
  watch(chainID: string, usage: () => Usage): () => void {
    this.live.set(chainID, usage);
    this.snapshot = undefined;
    return () => {
      if (this.live.get(chainID) === usage) this.live.delete(chainID);
      this.snapshot = undefined;
    };
  }

  /** A layer of this image is complete, with its final usage (from its meta.json). */
  settle(chainID: string, usage: Usage): void {
    this.settled.set(chainID, { bytes: usage.bytes, entries: usage.entries });
    this.snapshot = undefined;
  }

  /** What the image's layers other than `chainID` have unpacked so far. */
  others(chainID: string): Usage {
    const now = Date.now();
    if (!this.snapshot || now - this.snapshot.at > this.interval) {
      const per = new Map<string, Usage>(this.settled);
      for (const [chain, usage] of this.live) if (!per.has(chain)) per.set(chain, usage());
      const total = { bytes: 0, entries: 0 };
      for (const u of per.values()) {
        total.bytes += u.bytes;
        total.entries += u.entries;
      }
      this.snapshot = { at: now, total, per };
      // The Applier's stats() costs time in proportion to its tree: back off so a
      // huge layer is not slowed down by watching it.
      this.interval = Math.max(SNAPSHOT_MS, (Date.now() - now) * SNAPSHOT_COST_SHARE);
    }
    const own = this.snapshot.per.get(chainID) ?? ZERO;
    return { bytes: this.snapshot.total.bytes - own.bytes, entries: this.snapshot.total.entries - own.entries };
  }

  /** Throws ERR_LAYER_TOO_LARGE when the settled layers pass the caps. */
  check(what: string): void {
    let bytes = 0;
    let entries = 0;
    for (const u of this.settled.values()) {
      bytes += u.bytes;
      entries += u.entries;
    }
    if (bytes > this.caps.maxBytes || entries > this.caps.maxEntries) {
      throw imageTooLarge(
        `${what}: its ${this.settled.size} layers unpack to ${bytes} bytes in ${entries} entries; the limit is ${this.caps.maxBytes} bytes in ${this.caps.maxEntries} entries`,
      );
    }
  }
}
