/**
 * Where references come from when none are given as arguments: stdin, one
 * per line, bare (`localhost:5000/app:1.2`) or as a record carrying `ref`
 * (an `image` record from img-fetch, img-ls or img-tag; `name` [+ `tag`]
 * too). Records of other types pass through unchanged. Library code; a bad
 * line is readLines' ERR_INPUT_JSON naming `stdin:N`.
 */
import type { Readable } from 'node:stream';
import { readLines } from '@conveyor/lib-common/ndjson';

/** Record types img-push acts on when they carry a reference; an absent type counts too. */
export const PUSHABLE_TYPES = new Set(['image', 'tag', 'reference', 'ref']);

export type InputItem = { kind: 'ref'; ref: string; source: string } | { kind: 'passthrough'; record: Record<string, unknown> };

/** The reference a record names, or undefined when it passes through. */
export function referenceOf(record: Record<string, unknown>): string | undefined {
  const type = record.type;
  if (type !== undefined && !(typeof type === 'string' && PUSHABLE_TYPES.has(type))) return undefined;
  if (typeof record.ref === 'string' && record.ref !== '') return record.ref;
  if (typeof record.name === 'string' && record.name !== '') {
    return typeof record.tag === 'string' && record.tag !== '' && !record.name.includes('@') ? `${record.name}:${record.tag}` : record.name;
  }
  return undefined;
}

export async function* readInput(input: Readable): AsyncGenerator<InputItem> {
  for await (const line of readLines(input, { allowBare: true })) {
    const where = `${line.source}:${line.line}`;
    if (!line.record) {
      yield { kind: 'ref', ref: line.text, source: where };
      continue;
    }
    const ref = referenceOf(line.record);
    if (ref === undefined) yield { kind: 'passthrough', record: line.record };
    else yield { kind: 'ref', ref, source: where };
  }
}

/** References given as arguments, as input items. */
export function argumentItems(refs: string[]): InputItem[] {
  return refs.map((ref, i) => ({ kind: 'ref', ref, source: `argument ${i + 1}` }));
}
