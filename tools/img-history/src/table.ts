/**
 * img-history's table for terminals, the columns `docker history` prints:
 * IMAGE (the image's id on the newest row, `<missing>` below, as docker
 * shows images it did not build itself), CREATED, CREATED BY (truncated to
 * 45 characters unless noTrunc), SIZE, COMMENT. Library code: records in,
 * text out; hostile text made printable.
 */
import { formatBytes } from '@conveyor/lib-common/bytes';
import type { HistoryRecord } from '@conveyor/lib-common/image-history';
import { printable } from '@conveyor/lib-common/log';
import { formatTable, timeAgo } from '@conveyor/lib-common/table';

export const HISTORY_TABLE_HEADERS = ['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'];
const CREATED_BY_WIDTH = 45;

/** docker's truncation: the first width-1 characters and an ellipsis. */
export function truncate(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

export function historyRows(records: HistoryRecord[], imageId: string, options: { now?: number; noTrunc?: boolean } = {}): string[][] {
  const now = options.now ?? Date.now();
  return records.map((record, i) => {
    const createdBy = printable(record.createdBy.replace(/\s+/g, ' '));
    return [
      i === 0 ? imageId : '<missing>',
      timeAgo(record.created, now),
      options.noTrunc ? createdBy : truncate(createdBy, CREATED_BY_WIDTH),
      formatBytes(record.size),
      printable(record.comment),
    ];
  });
}

export function historyTable(rows: string[][]): string {
  return formatTable(HISTORY_TABLE_HEADERS, rows);
}
