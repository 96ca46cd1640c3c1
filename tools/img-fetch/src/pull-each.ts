/**
 * Pulling every reference of a run, one after another, and the exit policy:
 * a reference that fails is reported and the others still run; the run ends
 * with 0 when every pull succeeded, otherwise with the exit code of the first
 * failure (1 for a failed pull, 2 for a bad reference). Records that name no
 * reference pass through in their place in the stream. Library code: the
 * pull, the writer and the reporting are passed in.
 *
 * A failed reference is also an `error` record in its place in the stream
 * (lib-common/pipeline), so the tools downstream end with its exit code.
 *
 * Never throws for a failed pull (it becomes the `error` report); what the
 * input iterator or `write` throw (a bad input line, a closed stdout) ends
 * the run and propagates.
 */
import type { ConveyorError } from '@conveyor/lib-common/errors';
import { eachReference } from '@conveyor/lib-common/reference-input';
import type { FetchResult } from './fetch.js';
import type { InputItem } from './input.js';

export interface PullEachOptions {
  /** Pulls one reference and writes its records (fetchImage with the run's options). */
  pull: (ref: string) => Promise<FetchResult>;
  /** Writes a record that passes through. */
  write: (record: Record<string, unknown>) => Promise<void>;
  /** Told about each image pulled from the registry (not those the store answered). */
  info?: (message: string) => void;
  /** Told about each failed reference. */
  error: (error: ConveyorError) => void;
  /** Writes the `error` record of a failed reference downstream (default: the process's pipeline). */
  report?: (error: ConveyorError) => Promise<void>;
}

/** Pulls each reference of `items` in order (reference-input's eachReference policy); resolves with the run's exit code. */
export function pullEach(items: Iterable<InputItem> | AsyncIterable<InputItem>, options: PullEachOptions): Promise<number> {
  return eachReference(
    items,
    async (item) => {
      const result = await options.pull(item.ref);
      if (result.source === 'pulled')
        options.info?.(`pulled ${result.record.ref} (${result.record.digest}, ${result.downloadedLayers} of ${result.record.layers.length} layers downloaded)`);
    },
    options,
  );
}
