/**
 * img-fsck's run, in order:
 *
 *  1. under the gc lock (lib-common lease.ts: it waits for in-flight pulls,
 *     unpacks, builds and imports to end, and none starts until it is
 *     released, so no running writer is disturbed and none is mistaken for
 *     damage): index.json (salvaged by --repair when broken, the images it
 *     no longer names kept without a name: rebuild.ts), every entry's
 *     manifests and config (images.ts), every blob rehashed (blobs.ts),
 *     index.json entries that need a missing or removed blob dropped by
 *     --repair (under index.json's lock), every unpacked layer (layers.ts),
 *     containers whose owner is gone (containers.ts), temporary files of
 *     dead writers the collection does not look for (temp-files.ts);
 *  2. the orphans and leftovers: lib-common gc.ts's collection, a dry run
 *     without --repair, a real one with it (it takes the gc lock itself), each
 *     object it frees reported as a problem. It runs only when index.json
 *     could be read (or was salvaged): marking from a broken index would call
 *     every blob an orphan.
 *
 * Resolves to the `fsck` summary; problems go to the report as they are found.
 *
 * Failure: ERR_STORE_IO when there is no store at the root; ERR_STORE_LOCKED
 * when writers outlast the timeout; ERR_STORE_UNSAFE for a store other users
 * control; filesystem errors while repairing stop the run (what was reported
 * repaired is done; the next run goes on from there).
 */
import { lstat, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { imageRoots, listContainers } from '@conveyor/lib-common/container/state';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { collectGarbage, type FreedKind, type FreedRecord } from '@conveyor/lib-common/gc';
import { acquireGcLock } from '@conveyor/lib-common/lease';
import { withLock } from '@conveyor/lib-common/lock';
import { MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import { assertTrustedStore, isReadOnlyStore, type Store } from '@conveyor/lib-common/store';
import { type BlobProgress, checkBlobs } from './blobs.js';
import { checkContainers } from './containers.js';
import { checkImages } from './images.js';
import { readIndexFile, salvageEntries } from './index-file.js';
import { unnamedImages } from './rebuild.js';
import { checkLayers } from './layers.js';
import { checkTempFiles } from './temp-files.js';
import type { FsckCode, FsckRecord, Report } from './problems.js';

export interface FsckOptions {
  /** Recompute unpacked layers' tree checksums (--layers, the default). */
  trees: boolean;
  timeoutMs: number;
  info: (message: string) => void;
  warn: (message: string) => void;
  onWait: (pids: number[]) => void;
  progress?: BlobProgress;
}

/** The problem code of each kind of object the collection frees. */
const ORPHAN_CODES: Record<FreedKind, FsckCode> = {
  blob: 'FSCK_ORPHAN_BLOB',
  layer: 'FSCK_ORPHAN_LAYER',
  staging: 'FSCK_LEFTOVER_STAGING',
  ingest: 'FSCK_LEFTOVER_INGEST',
  temp: 'FSCK_LEFTOVER_TEMP',
  link: 'FSCK_LEFTOVER_LINK',
  flattened: 'FSCK_LEFTOVER_FLATTENED',
  'build-cache': 'FSCK_BUILD_CACHE_INVALID',
};

const ORPHAN_WHY: Record<FreedKind, string> = {
  blob: 'no image, container or build-cache entry needs it',
  layer: 'no image, container or build-cache entry needs this unpacked layer',
  staging: 'a layer unpack whose process is gone left it',
  ingest: 'a partial download nobody is resuming',
  temp: 'a temporary file whose writer is gone',
  link: 'a short link whose layer is gone',
  flattened: 'a registration of a flattened tree that is gone',
  'build-cache': 'a build-cache entry that does not parse or names a blob that is gone',
};

function orphanMessage(record: FreedRecord, repair: boolean): string {
  const what = record.digest ?? record.chainID ?? record.key ?? record.path;
  return `${record.path}${what !== record.path ? ` (${what})` : ''}: ${ORPHAN_WHY[record.kind]}${repair ? ': removed' : ''}`;
}

export async function fsck(store: Store, report: Report, options: FsckOptions): Promise<FsckRecord> {
  const rootInfo = await lstat(store.root).catch(() => undefined);
  if (!rootInfo?.isDirectory()) {
    throw new ConveyorError('ERR_STORE_IO', `no store at ${store.root}`, { hint: 'pass the store with --root or CONVEYOR_ROOT' });
  }
  await assertTrustedStore(store.root);
  const indexPath = join(store.root, 'index.json');
  let indexUsable = true;
  // A read-only store has no writer to wait for: it is checked without the lock (a repair fails at its first write).
  const unlocked = !report.repair && (await isReadOnlyStore(store.root));
  const gc = unlocked ? undefined : await acquireGcLock(store, { timeoutMs: options.timeoutMs, onWait: options.onWait });
  try {
    const file = await readIndexFile(indexPath);
    let entries: unknown[] = [];
    let salvaged: unknown[] | undefined;
    if (file.kind === 'ok') entries = file.index.manifests;
    else if (file.kind === 'invalid' || (await hasBlobs(store))) {
      const why = file.kind === 'invalid' ? file.why : 'it is missing, and the store holds blobs';
      salvaged = file.kind === 'invalid' ? salvageEntries(file.text) : [];
      // The images it no longer names stay, nameless, rather than being swept as orphans.
      const unnamed = report.repair ? await unnamedImages(store, salvaged) : [];
      if (report.repair) entries = [...salvaged, ...unnamed];
      else indexUsable = false;
      await report.problem({
        code: 'FSCK_INDEX_INVALID',
        path: 'index.json',
        message: `index.json is not an OCI index: ${why}${
          report.repair
            ? `; rewritten with the ${salvaged.length} entries that could be read${file.kind === 'invalid' ? ' (the old one kept as index.json.broken)' : ''} and ${unnamed.length} image(s) found among the blobs, without a name (img-tag names them)`
            : `; ${salvaged.length} entries could be read from it (--repair keeps those, and the images among the blobs it no longer names)`
        }`,
        repaired: report.repair,
      });
    }
    const images = await checkImages(store, entries, report);
    await checkBlobs(store, images, report, options.progress);
    if (report.repair && (salvaged !== undefined || images.drop.size > 0)) {
      const dropped = new Set([...images.drop].map((position) => JSON.stringify(entries[position])));
      await withLock(store.lockPath('index'), async () => {
        if (salvaged !== undefined) {
          if (file.kind === 'invalid') await writeFile(`${indexPath}.broken`, file.text, { mode: 0o600 });
          const index = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: entries.filter((entry) => !dropped.has(JSON.stringify(entry))) };
          await store.writeFileAtomic(indexPath, `${JSON.stringify(index, null, 2)}\n`);
          return;
        }
        // Read again under the lock: an entry is dropped by what it is, whatever moved meanwhile.
        const now = await readIndexFile(indexPath);
        if (now.kind !== 'ok') return;
        const manifests = now.index.manifests.filter((entry) => !dropped.has(JSON.stringify(entry)));
        await store.writeFileAtomic(indexPath, `${JSON.stringify({ ...now.index, manifests }, null, 2)}\n`);
      });
    }
    await checkLayers(store, report, { trees: options.trees, info: options.info });
    await checkContainers(store, report, options.warn);
    await checkTempFiles(store, report);
  } finally {
    await gc?.release();
  }

  if (!indexUsable) {
    options.warn('orphans and leftovers not looked for: index.json is broken (run with --repair to salvage it)');
    return report.summary();
  }
  await collectGarbage(store, {
    dryRun: !report.repair,
    timeoutMs: options.timeoutMs,
    containerRoots: async () => imageRoots(await listContainers(store, { warn: options.warn })),
    warn: options.warn,
    onWait: options.onWait,
    onFreed: async (record) => {
      // A layer or blob already reported (and, with --repair, removed) is not reported again as an orphan.
      if (report.paths.has(record.path)) return;
      await report.problem({
        code: ORPHAN_CODES[record.kind],
        path: record.path,
        ...(record.digest ? { digest: record.digest } : {}),
        ...(record.chainID ? { chainID: record.chainID } : {}),
        message: orphanMessage(record, report.repair),
        repaired: report.repair,
      });
    },
  });
  return report.summary();
}

async function hasBlobs(store: Store): Promise<boolean> {
  return (await readdir(store.blobsDir).catch(() => [] as string[])).length > 0;
}
