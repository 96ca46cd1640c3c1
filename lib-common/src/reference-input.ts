/**
 * References a tool acts on, from its arguments or, with none, from stdin:
 * one per line, bare (`alpine:3.20`) or as a record carrying `ref` (or
 * `name` with an optional `tag`) whose `type` the tool accepts (an absent
 * type counts too). Records of other types pass through unchanged, in
 * their place. Shared by the tools that take references (img-push; the
 * shape img-fetch's input.ts has too).
 *
 * Library code. A bad line is readLines' ERR_INPUT_JSON naming `stdin:N`;
 * the references themselves are not parsed here (the tool reports a bad one
 * as ERR_REF_INVALID, naming where it came from).
 */
import type { Readable } from 'node:stream';
import { type ConveyorError, EXIT, toConveyorError } from './errors.js';
import { readLines } from './ndjson.js';
import { pipeline } from './pipeline.js';

export type ReferenceItem = { kind: 'ref'; ref: string; source: string } | { kind: 'passthrough'; record: Record<string, unknown> };

/** The reference a record names when its type is one of `types` (or absent); undefined: it passes through. */
export function referenceOf(record: Record<string, unknown>, types: ReadonlySet<string>): string | undefined {
  const type = record.type;
  if (type !== undefined && !(typeof type === 'string' && types.has(type))) return undefined;
  if (typeof record.ref === 'string' && record.ref !== '') return record.ref;
  if (typeof record.name === 'string' && record.name !== '') {
    return typeof record.tag === 'string' && record.tag !== '' && !record.name.includes('@') ? `${record.name}:${record.tag}` : record.name;
  }
  return undefined;
}

/** The references (and passthrough records) of `input`, line by line, as they arrive. */
export async function* readReferences(input: Readable, types: ReadonlySet<string>): AsyncGenerator<ReferenceItem> {
  for await (const line of readLines(input, { allowBare: true })) {
    const where = `${line.source}:${line.line}`;
    if (!line.record) {
      yield { kind: 'ref', ref: line.text, source: where };
      continue;
    }
    const ref = referenceOf(line.record, types);
    if (ref === undefined) yield { kind: 'passthrough', record: line.record };
    else yield { kind: 'ref', ref, source: where };
  }
}

/** References given as arguments, as items. */
export function argumentItems(refs: string[]): ReferenceItem[] {
  return refs.map((ref, i) => ({ kind: 'ref', ref, source: `argument ${i + 1}` }));
}

export interface EachReferenceOptions {
  /** Writes a record that passes through. */
  write: (record: Record<string, unknown>) => Promise<void>;
  /** Told about each reference that failed (the message on stderr). */
  error: (error: ConveyorError) => void;
  /** Writes the `error` record of a failed reference downstream (default: the process's pipeline). */
  report?: (error: ConveyorError) => Promise<void>;
}

/**
 * The exit policy of a tool that acts on references one after another
 * (img-fetch, img-push, img-inspect, img-history, img-export): other records
 * pass through in their place; a reference whose `act` fails is reported
 * (`error`, and an `error` record downstream) and the others still run; the
 * result is 0, or the first failure's exit code. What the input or `write`
 * throw (a bad input line, a closed stdout) ends the run, and so does an
 * EPIPE from `act` (a closed stdout is no failure of that reference).
 */
export async function eachReference(
  items: Iterable<ReferenceItem> | AsyncIterable<ReferenceItem>,
  act: (item: { ref: string; source: string }) => Promise<void>,
  options: EachReferenceOptions,
): Promise<number> {
  let exitCode: number = EXIT.OK;
  for await (const item of items) {
    if (item.kind === 'passthrough') {
      // readLines already handed upstream `error` records to the pipeline: what is left is another tool's record.
      await options.write(item.record);
      continue;
    }
    try {
      await act(item);
    } catch (error) {
      if ((error as NodeJS.ErrnoException)?.code === 'EPIPE') throw error;
      const err = toConveyorError(error);
      options.error(err);
      await (options.report ?? ((e) => pipeline.reportOwn(e)))(err);
      if (exitCode === EXIT.OK) exitCode = err.exitCode;
    }
  }
  return exitCode;
}
