/**
 * img-df's table for terminals, as `docker system df` prints it: TYPE,
 * TOTAL, ACTIVE, SIZE, RECLAIMABLE (with its share of SIZE). Library code:
 * records in, text out.
 */
import { formatBytes } from '@conveyor/lib-common/bytes';
import { formatTable } from '@conveyor/lib-common/table';
import type { DfKind, DfRecord } from './usage.js';

export const DF_TABLE_HEADERS = ['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'];
const TYPE_NAMES: Record<DfKind, string> = { images: 'Images', layers: 'Unpacked layers', containers: 'Containers', 'build-cache': 'Build Cache' };

/** `1.2MB (50%)`, as docker: the share rounded down, none for an empty size. */
export function reclaimableText(reclaimable: number, size: number): string {
  return size > 0 ? `${formatBytes(reclaimable)} (${Math.floor((100 * reclaimable) / size)}%)` : formatBytes(reclaimable);
}

export function dfRow(record: DfRecord): string[] {
  return [TYPE_NAMES[record.kind], String(record.total), String(record.active), formatBytes(record.size), reclaimableText(record.reclaimable, record.size)];
}

export function dfTable(records: DfRecord[]): string {
  return formatTable(DF_TABLE_HEADERS, records.map(dfRow));
}
