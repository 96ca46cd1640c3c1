/**
 * Pushing every reference of a run, one after another, and the exit policy:
 * a reference that fails is reported and the others still run; the run ends
 * with 0 when every push succeeded, otherwise with the first failure's exit
 * code (1 for a failed push, 2 for a bad reference). Records that name no
 * reference pass through in their place. `--to` renames one image only: a
 * second reference with it is a usage error. Library code.
 *
 * Never throws for a failed push (it is reported, and written downstream as
 * an `error` record, by lib-common's eachReference); what the input or
 * `write` throw (a bad input line, a second reference with --to, a closed
 * stdout) ends the run.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { eachReference, type ReferenceItem } from '@conveyor/lib-common/reference-input';
import type { PushResult } from './push.js';

/** Record types img-push acts on when they carry a reference (image records from img-tag, img-ls, img-fetch); an absent type counts too. */
export const PUSHABLE_TYPES: ReadonlySet<string> = new Set(['image', 'tag', 'reference', 'ref']);

export interface PushEachOptions {
  push: (ref: string) => Promise<PushResult>;
  write: (record: Record<string, unknown>) => Promise<void>;
  /** Set when --to was given: only one reference may be pushed. */
  renaming?: boolean;
  info?: (message: string) => void;
  error: (error: ConveyorError) => void;
}

export function pushEach(items: Iterable<ReferenceItem> | AsyncIterable<ReferenceItem>, options: PushEachOptions): Promise<number> {
  return eachReference(
    options.renaming ? onlyOne(items) : items,
    async (item) => {
      const { record, counts, uploadedBytes } = await options.push(item.ref);
      options.info?.(
        `pushed ${record.ref} (${record.indexDigest ?? record.digest}: ${counts.uploaded} blobs uploaded (${uploadedBytes} bytes), ${counts.mounted} mounted, ${counts.exists} already there)`,
      );
    },
    options,
  );
}

/** The items, ending the run (a usage error, not one failed push) at a second reference: --to renames one image. */
async function* onlyOne(items: Iterable<ReferenceItem> | AsyncIterable<ReferenceItem>): AsyncGenerator<ReferenceItem> {
  let refs = 0;
  for await (const item of items) {
    if (item.kind === 'ref' && refs++ > 0) {
      throw new ConveyorError('ERR_USAGE', `--to names one target, but ${item.source} names a second image (${item.ref})`, {
        hint: 'push one image per --to, or tag each with img-tag first',
      });
    }
    yield item;
  }
}
