/**
 * What img-fsck reports: the `problem` record (one per problem, with a stable
 * FSCK_* code), the `fsck` summary record, and the Report that counts them
 * while they are written. docs/protocol.md lists the codes, their meaning and
 * what --repair does for each.
 *
 * Failure: write errors of the sink propagate (EPIPE is runCli's business).
 */

export const FSCK_CODES = [
  'FSCK_INDEX_INVALID',
  'FSCK_INDEX_ENTRY_INVALID',
  'FSCK_MANIFEST_MISSING',
  'FSCK_MANIFEST_INVALID',
  'FSCK_CONFIG_INVALID',
  'FSCK_BLOB_MISSING',
  'FSCK_BLOB_CORRUPT',
  'FSCK_BLOB_NOT_FILE',
  'FSCK_LAYER_INVALID',
  'FSCK_LAYER_INCOMPLETE',
  'FSCK_LAYER_META',
  'FSCK_LAYER_TREE',
  'FSCK_ORPHAN_BLOB',
  'FSCK_ORPHAN_LAYER',
  'FSCK_LEFTOVER_STAGING',
  'FSCK_LEFTOVER_INGEST',
  'FSCK_LEFTOVER_TEMP',
  'FSCK_LEFTOVER_LINK',
  'FSCK_LEFTOVER_FLATTENED',
  'FSCK_BUILD_CACHE_INVALID',
  'FSCK_CONTAINER_DEAD',
] as const;

export type FsckCode = (typeof FSCK_CODES)[number];

export interface ProblemRecord {
  type: 'problem';
  v: 1;
  code: FsckCode;
  /** Where, relative to the store root (`blobs/sha256/<hex>`, `layers/<hex>`, `index.json`). */
  path: string;
  digest?: string;
  chainID?: string;
  /** The reference of the image the problem removes from index.json (pull it again), or that it concerns. */
  ref?: string;
  /** Blob problems: the references of the images that need the blob (--repair drops them from index.json: pull them again). */
  refs?: string[];
  /** Container problems: the container's id. */
  id?: string;
  message: string;
  repaired: boolean;
  store: string;
}

export interface Counts {
  blobs: number;
  images: number;
  layers: number;
  containers: number;
}

export interface FsckRecord {
  type: 'fsck';
  v: 1;
  store: string;
  /** What was looked at. */
  checked: Counts;
  /** Unpacked layers without a tree checksum (unpacked before it was recorded): checked but for their tree. */
  unverifiedLayers: number;
  problems: number;
  repaired: number;
  repair: boolean;
}

export type ProblemInput = Omit<ProblemRecord, 'type' | 'v' | 'store' | 'repaired'> & { repaired?: boolean };

/** Writes problem records as they are found and keeps the counts for the summary. */
export class Report {
  readonly checked: Counts = { blobs: 0, images: 0, layers: 0, containers: 0 };
  unverifiedLayers = 0;
  problems = 0;
  repaired = 0;
  /** Paths already reported: a later pass (the orphan sweep) does not report them twice. */
  readonly paths = new Set<string>();

  constructor(
    readonly store: string,
    readonly repair: boolean,
    private readonly sink: (record: ProblemRecord) => Promise<void>,
  ) {}

  async problem(input: ProblemInput): Promise<void> {
    const { repaired = false, ...rest } = input;
    this.problems++;
    if (repaired) this.repaired++;
    this.paths.add(input.path);
    await this.sink({ type: 'problem', v: 1, ...rest, repaired, store: this.store });
  }

  summary(): FsckRecord {
    return {
      type: 'fsck',
      v: 1,
      store: this.store,
      checked: this.checked,
      unverifiedLayers: this.unverifiedLayers,
      problems: this.problems,
      repaired: this.repaired,
      repair: this.repair,
    };
  }

  /** Whether problems remain (exit 1). */
  get unclean(): boolean {
    return this.problems > this.repaired;
  }
}
