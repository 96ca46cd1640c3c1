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
import { readLines } from './ndjson.js';

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
