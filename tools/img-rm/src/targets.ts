/**
 * What img-rm is asked to remove, from arguments or stdin: a reference, a
 * manifest digest (`sha256:<64 hex>`), or an image ID prefix (`91bd47101e74`,
 * at least 4 hex digits, as docker rmi takes); an `image` record names its
 * `ref` and the digest it was listed with. Library code: never prints.
 *
 * Failure: ERR_REF_INVALID (exit 2) for text that is no reference, digest or
 * prefix; ERR_INPUT_RECORD (exit 2) for a record whose fields are not what an
 * `image` record holds; ERR_INPUT_JSON (from readLines) for a bad line.
 */
import type { Readable } from 'node:stream';
import { SHA256_DIGEST } from '@conveyor/lib-common/digest';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readLines } from '@conveyor/lib-common/ndjson';
import { badRecord } from '@conveyor/lib-common/records';
import { formatReference, parseReference } from '@conveyor/lib-common/reference';

export type Target =
  /** A normalised reference; `expect`: the manifest (or index) digests a record said it points at. */
  | { kind: 'ref'; ref: string; input: string; expect?: string[]; source: string }
  /** A full manifest or index digest. */
  | { kind: 'digest'; digest: string; input: string; source: string }
  /** Hex digits that may be a repository name (`docker rmi cafe`) or an image ID prefix. */
  | { kind: 'prefix'; hex: string; ref?: string; input: string; source: string };

/** One input: a target, a record to pass through, or a line that names nothing valid (reported, the run goes on). */
export type InputItem =
  | { kind: 'target'; target: Target }
  | { kind: 'passthrough'; record: Record<string, unknown> }
  | { kind: 'invalid'; error: ConveyorError };

/** The target a typed argument (or bare input line) names. */
export function parseTarget(text: string, source: string): Target {
  const input = text.trim();
  if (SHA256_DIGEST.test(input)) return { kind: 'digest', digest: input, input, source };
  const hex = /^(sha256:)?([a-f0-9]{4,64})$/.exec(input);
  if (hex) {
    if (hex[1] === undefined && hex[2].length === 64) return { kind: 'digest', digest: `sha256:${hex[2]}`, input, source };
    // Bare hex is also a valid repository name: the reference is tried first, as docker rmi does.
    let ref: string | undefined;
    if (hex[1] === undefined) {
      try {
        ref = formatReference(parseReference(input));
      } catch {
        ref = undefined;
      }
    }
    return { kind: 'prefix', hex: hex[2], ...(ref ? { ref } : {}), input, source };
  }
  try {
    return { kind: 'ref', ref: formatReference(parseReference(input)), input, source };
  } catch (error) {
    if (error instanceof ConveyorError) throw new ConveyorError(error.code, `${source}: ${error.message}`, { hint: error.hint });
    throw error;
  }
}

/**
 * The target an input record names, or undefined to pass it through: `image`
 * records (and records without a type that carry `ref`) are acted on; other
 * types pass. A record's fields are checked, not trusted.
 */
export function recordTarget(record: Record<string, unknown>, where: string): Target | undefined {
  const { type } = record;
  if (type !== undefined && type !== 'image') {
    if (typeof type !== 'string') throw badRecord(where, `type is not a string: ${JSON.stringify(type)?.slice(0, 80)}`);
    return undefined;
  }
  const { ref, digest, indexDigest } = record;
  if (ref === undefined && typeof digest === 'string') {
    if (!SHA256_DIGEST.test(digest)) throw badRecord(where, `digest is not a sha256 digest: ${JSON.stringify(digest).slice(0, 80)}`);
    return { kind: 'digest', digest, input: digest, source: where };
  }
  if (typeof ref !== 'string' || ref === '') throw badRecord(where, 'an image record needs a ref (or a digest)', 'img-ls prints such records');
  for (const [name, value] of [
    ['digest', digest],
    ['indexDigest', indexDigest],
  ] as const) {
    if (value !== undefined && (typeof value !== 'string' || !SHA256_DIGEST.test(value))) {
      throw badRecord(where, `${name} is not a sha256 digest: ${JSON.stringify(value)?.slice(0, 80)}`);
    }
  }
  let normal: string;
  try {
    normal = formatReference(parseReference(ref));
  } catch (error) {
    throw badRecord(where, `ref is not a valid reference: ${(error as Error).message}`);
  }
  const expect = [digest, indexDigest].filter((d): d is string => typeof d === 'string');
  return { kind: 'ref', ref: normal, input: ref, ...(expect.length > 0 ? { expect } : {}), source: where };
}

/** Targets from stdin: bare references, digests or prefixes per line, or records. */
export async function* readTargets(input: Readable): AsyncGenerator<InputItem> {
  for await (const line of readLines(input, { allowBare: true })) {
    const where = `${line.source}:${line.line}`;
    let target: Target | undefined;
    try {
      target = line.record ? recordTarget(line.record, where) : parseTarget(line.text, where);
    } catch (error) {
      if (!(error instanceof ConveyorError)) throw error;
      yield { kind: 'invalid', error };
      continue;
    }
    yield target ? { kind: 'target', target } : { kind: 'passthrough', record: line.record! };
  }
}
