/**
 * Where references come from when none are given as arguments: stdin, one
 * per line, either bare (`alpine:3.20`) or as a record carrying `ref` (or
 * `name`, with an optional `tag`), read by lib-common's reference-input.
 * Records of other types (layer, rootfs, mount, container, ...) are passed
 * through unchanged. Library code.
 */
import type { Readable } from 'node:stream';
import { readReferences, type ReferenceItem } from '@conveyor/lib-common/reference-input';

/** Record types img-fetch acts on when they carry a reference; absent type counts too. */
export const FETCHABLE_TYPES: ReadonlySet<string> = new Set(['image', 'tag', 'repository', 'reference', 'ref']);

export type InputItem = ReferenceItem;

export function readInput(input: Readable): AsyncGenerator<InputItem> {
  return readReferences(input, FETCHABLE_TYPES);
}
