/**
 * Repositories for `img-search --tags` when none is given as an argument:
 * stdin, one bare name per line (`busybox`, `localhost:5000/app`) or a record
 * naming one (`repository` records from img-search, or any record without a
 * type that has `name`). Records of other types pass through unchanged.
 * Library code.
 *
 * On failure: a line that is not JSON where JSON was started is
 * ERR_INPUT_JSON (`stdin:N`); a repository record without a usable name, or a
 * name that is not a repository, is ERR_INPUT_RECORD (`stdin:N`).
 */
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readLines } from '@conveyor/lib-common/ndjson';
import { badRecord } from '@conveyor/lib-common/records';
import type { RepositoryRef } from '@conveyor/registry/client';
import { tagsRepository } from './target.js';

export type TagsInput = { kind: 'repository'; repo: RepositoryRef; where: string } | { kind: 'passthrough'; record: Record<string, unknown> };

export async function* readRepositories(input: Readable): AsyncGenerator<TagsInput> {
  for await (const line of readLines(input, { allowBare: true })) {
    const where = `${line.source}:${line.line}`;
    if (!line.record) {
      yield { kind: 'repository', repo: repositoryAt(line.text, where), where };
      continue;
    }
    const { type, name } = line.record;
    if (type !== undefined && type !== 'repository') {
      yield { kind: 'passthrough', record: line.record };
      continue;
    }
    if (typeof name !== 'string' || name === '') throw badRecord(where, 'a repository record needs a "name"');
    yield { kind: 'repository', repo: repositoryAt(name, where), where };
  }
}

function repositoryAt(text: string, where: string): RepositoryRef {
  try {
    return tagsRepository(text);
  } catch (error) {
    if (error instanceof ConveyorError) throw badRecord(where, error.message, error.hint);
    throw error;
  }
}
