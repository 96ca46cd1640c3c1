/**
 * index.json as img-fsck reads it: parsed when it is an OCI index, and when it
 * is not (torn, a garbage line, not an index), salvaged: every complete JSON
 * object in the text that is a manifest or index descriptor is kept, so the
 * names of the images whose entries survived are not lost with the file.
 *
 * Failure: readIndexFile throws the filesystem's error other than ENOENT (a
 * missing index.json is an empty store... or one that lost it: `missing`).
 */
import { readFile } from 'node:fs/promises';
import { INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import { indexEntryProblem } from '@conveyor/lib-common/store';

export type IndexFile =
  | { kind: 'ok'; index: { schemaVersion?: unknown; manifests: unknown[] } & Record<string, unknown> }
  | { kind: 'missing' }
  | { kind: 'invalid'; why: string; text: string };

/** The largest index.json read: a store with a million tags would still be smaller. */
const MAX_INDEX_BYTES = 256 * 1024 * 1024;

export async function readIndexFile(path: string): Promise<IndexFile> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    if ((error as NodeJS.ErrnoException).code === 'EISDIR') return { kind: 'invalid', why: 'it is a directory', text: '' };
    throw error;
  }
  if (data.length > MAX_INDEX_BYTES) return { kind: 'invalid', why: `it is ${data.length} bytes`, text: '' };
  const text = data.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { kind: 'invalid', why: `it is not JSON (${(error as Error).message})`, text };
  }
  const index = value as { schemaVersion?: unknown; manifests?: unknown } | null;
  if (!index || typeof index !== 'object' || Array.isArray(index)) return { kind: 'invalid', why: 'it is not a JSON object', text };
  if (index.schemaVersion !== 2) return { kind: 'invalid', why: 'its schemaVersion is not 2', text };
  if (!Array.isArray(index.manifests)) return { kind: 'invalid', why: 'its manifests is not an array', text };
  return { kind: 'ok', index: index as { manifests: unknown[] } };
}

/** Whether `value` is a usable top-level index entry: a descriptor of a manifest or an index. */
export function isImageDescriptor(value: unknown): boolean {
  if (indexEntryProblem(value) !== undefined) return false;
  const mediaType = (value as { mediaType?: unknown }).mediaType;
  return typeof mediaType === 'string' && (MANIFEST_MEDIA_TYPES.includes(mediaType) || INDEX_MEDIA_TYPES.includes(mediaType));
}

/** The largest broken index.json salvaged. */
const MAX_SALVAGE_BYTES = 4 * 1024 * 1024;

/** The end of the JSON value (object or array) that starts at `start`, or -1 when the text ends first. */
function valueEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/**
 * The image descriptors that can be read out of a broken index.json's text:
 * every `{...}` that parses and is one (nested objects of a kept descriptor,
 * its annotations, are part of it and not looked at again).
 */
export function salvageEntries(text: string): unknown[] {
  const found: unknown[] = [];
  // Each object is scanned to its end, so a long text full of unclosed ones costs its square: not worth salvaging.
  if (text.length > MAX_SALVAGE_BYTES) return found;
  let at = text.indexOf('{');
  while (at !== -1) {
    const end = valueEnd(text, at);
    let next = at + 1;
    if (end !== -1) {
      try {
        const value = JSON.parse(text.slice(at, end)) as unknown;
        if (isImageDescriptor(value)) {
          found.push(value);
          next = end;
        }
      } catch {
        // Not a whole object (garbage inside it): look at the objects nested in it.
      }
    }
    at = text.indexOf('{', next);
  }
  return found;
}
