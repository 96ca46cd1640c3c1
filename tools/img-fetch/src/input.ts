/**
 * Where references come from when none are given as arguments: stdin, one
 * per line, either bare (`alpine:3.20`) or as a record carrying `ref` (or
 * `name`, with an optional `tag`). Records of other types (layer, rootfs,
 * mount, container, ...) are passed through unchanged. Library code.
 */
import type { Readable } from 'node:stream';
import { readLines } from '@conveyor/lib-common/ndjson';

/** Record types img-fetch acts on when they carry a reference; absent type counts too. */
export const FETCHABLE_TYPES = new Set(['image', 'tag', 'repository', 'reference', 'ref']);

export type InputItem = { kind: 'ref'; ref: string; source: string } | { kind: 'passthrough'; record: Record<string, unknown> };

/** The reference a record names, or undefined when img-fetch should pass it through. */
export function referenceOf(record: Record<string, unknown>): string | undefined {
  const type = record.type;
  if (type !== undefined && !(typeof type === 'string' && FETCHABLE_TYPES.has(type))) return undefined;
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
