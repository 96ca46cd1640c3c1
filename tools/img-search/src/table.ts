/**
 * img-search's tables for terminals: Hub results as `docker search` prints
 * them (NAME, DESCRIPTION cut to 45 characters unless --no-trunc, STARS,
 * OFFICIAL), catalog entries by name, tags with their digests and platforms.
 * Registry text is hostile: control characters are shown as `?`. Library
 * code: records in, text out.
 */
import { printable } from '@conveyor/lib-common/log';
import { formatPlatform } from '@conveyor/lib-common/platform';
import type { RepositoryRecord, TagRecord } from '@conveyor/lib-common/records';
import { formatTable } from '@conveyor/lib-common/table';

const DESCRIPTION_WIDTH = 45;

/** One line of description: whitespace runs become one space, cut with `…` as docker does. */
export function shortDescription(text: string | undefined, truncate: boolean): string {
  const line = printable((text ?? '').replace(/\s+/g, ' ').trim());
  return truncate && line.length > DESCRIPTION_WIDTH ? `${line.slice(0, DESCRIPTION_WIDTH - 1)}…` : line;
}

export function repositoryTable(records: RepositoryRecord[], truncate = true): string {
  const fromHub = records.some((r) => r.stars !== undefined);
  if (!fromHub)
    return formatTable(
      ['NAME'],
      records.map((r) => [printable(r.name)]),
    );
  return formatTable(
    ['NAME', 'DESCRIPTION', 'STARS', 'OFFICIAL'],
    records.map((r) => [printable(r.name), shortDescription(r.description, truncate), String(r.stars ?? 0), r.official ? '[OK]' : '']),
  );
}

export function tagTable(records: TagRecord[], truncate = true): string {
  const withDigests = records.some((r) => r.digest !== undefined);
  if (!withDigests)
    return formatTable(
      ['NAME', 'TAG'],
      records.map((r) => [printable(r.name), printable(r.tag)]),
    );
  return formatTable(
    ['NAME', 'TAG', 'DIGEST', 'PLATFORMS'],
    records.map((r) => [
      printable(r.name),
      printable(r.tag),
      r.digest === undefined ? '<unknown>' : truncate ? r.digest.slice(0, 19) : r.digest,
      printable((r.platforms ?? []).map(formatPlatform).join(',')),
    ]),
  );
}
