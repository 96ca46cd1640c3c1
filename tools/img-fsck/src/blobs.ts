/**
 * The blob half of the check: every file under blobs/sha256 named by a digest
 * is hashed (streamed: memory stays flat) unless images.ts already read it
 * whole; one whose size differs from what a descriptor says is corrupt
 * without a byte read (a 10 GB sparse file in a blob's place costs a stat).
 * Then every blob the images need and the store lacks is reported missing.
 *
 * --repair removes a corrupt blob or whatever stands in its place (a
 * directory, a symlink — itself, never what it points at), so the next pull
 * fetches it again, and drops the index.json entries that need it (their
 * names are in the record's `refs`).
 *
 * Temporary files (`<hex>.<pid>.<rand>.tmp`) are the orphan sweep's (gc.ts).
 *
 * Failure: problems are reported, not thrown; an I/O error other than what a
 * blob is (EIO, EACCES) propagates.
 */
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SHA256_HEX } from '@conveyor/lib-common/digest';
import type { Store } from '@conveyor/lib-common/store';
import { type BlobState, checkBlob } from './blob-read.js';
import type { ImageCheck } from './images.js';
import type { Report } from './problems.js';

export interface BlobProgress {
  /** A blob of `size` bytes starts to be hashed; `bytes` as it goes; done at the end. */
  start: (hex: string, size: number) => void;
  bytes: (hex: string, done: number, size: number) => void;
  done: (hex: string, size: number) => void;
}

/** Blobs at least this large show progress. */
const PROGRESS_MIN_BYTES = 8 * 1024 * 1024;

async function blobNames(store: Store): Promise<string[]> {
  try {
    return (await readdir(store.blobsDir)).sort();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
}

export async function checkBlobs(store: Store, images: ImageCheck, report: Report, progress?: BlobProgress): Promise<void> {
  const refsOf = (hex: string): string[] => [...(images.needs.get(hex)?.entries ?? [])].map((position) => images.names.get(position) ?? `entry ${position}`);
  const dropNeeders = (hex: string) => {
    for (const position of images.needs.get(hex)?.entries ?? []) images.drop.add(position);
  };
  const present = new Set<string>();
  for (const name of await blobNames(store)) {
    if (!SHA256_HEX.test(name)) continue;
    present.add(name);
    report.checked.blobs++;
    const digest = `sha256:${name}`;
    const path = join(store.blobsDir, name);
    let state: BlobState | undefined = images.damaged.get(name);
    if (!state && !images.verified.has(name)) {
      const need = images.needs.get(name);
      let done = 0;
      let shown = false;
      state = await checkBlob(path, digest, {
        expectedSize: need?.size,
        onBytes: (bytes, size) => {
          done += bytes;
          if (!progress || size < PROGRESS_MIN_BYTES) return;
          if (!shown) progress.start(name, size);
          shown = true;
          progress.bytes(name, done, size);
        },
      });
      if (shown) progress?.done(name, done);
    }
    if (!state || state.kind === 'ok' || state.kind === 'missing') continue;
    const refs = refsOf(name);
    const needed = refs.length > 0 ? ` (needed by ${refs.join(', ')}${report.repair ? ': removed from index.json, pull again' : ''})` : '';
    if (report.repair) {
      await rm(path, { recursive: state.kind === 'not-file', force: true });
      dropNeeders(name);
    }
    await report.problem({
      code: state.kind === 'not-file' ? 'FSCK_BLOB_NOT_FILE' : 'FSCK_BLOB_CORRUPT',
      path: `blobs/sha256/${name}`,
      digest,
      ...(refs.length > 0 ? { refs } : {}),
      message:
        state.kind === 'not-file'
          ? `blob ${digest} is ${state.what}, not a file${needed}`
          : state.kind === 'corrupt'
            ? `blob ${digest}: ${state.actual}${needed}`
            : `blob ${digest} is ${state.size} bytes${needed}`,
      repaired: report.repair,
    });
  }
  for (const [hex, need] of images.needs) {
    const path = `blobs/sha256/${hex}`;
    if (present.has(hex) || report.paths.has(path)) continue;
    const refs = refsOf(hex);
    if (report.repair) dropNeeders(hex);
    await report.problem({
      code: 'FSCK_BLOB_MISSING',
      path,
      digest: `sha256:${hex}`,
      refs,
      message: `${need.role} blob sha256:${hex} is missing (needed by ${refs.join(', ')}${report.repair ? ': removed from index.json, pull again' : ''})`,
      repaired: report.repair,
    });
  }
}
