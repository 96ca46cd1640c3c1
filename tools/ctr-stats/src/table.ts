/** docker stats' table, for a terminal: one row per `stats` record. */
import { formatBytes } from '@conveyor/lib-common/bytes';
import type { StatsRecord } from '@conveyor/lib-common/container/stats';
import { formatTable } from '@conveyor/lib-common/table';

export const STATS_HEADERS = ['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'NET I/O', 'BLOCK I/O', 'PIDS'];

/** One row: percentages with two decimals, memory in binary units (as limits are given), I/O in decimal ones. */
export function statsRow(record: StatsRecord): string[] {
  return [
    record.id.slice(0, 12),
    record.name ?? '--',
    `${record.cpuPercent.toFixed(2)}%`,
    `${formatBytes(record.memoryUsage, 'binary')} / ${formatBytes(record.memoryLimit, 'binary')}`,
    `${record.memoryPercent.toFixed(2)}%`,
    record.netRx === undefined || record.netTx === undefined ? '--' : `${formatBytes(record.netRx)} / ${formatBytes(record.netTx)}`,
    `${formatBytes(record.blockRead)} / ${formatBytes(record.blockWrite)}`,
    String(record.pids),
  ];
}

export function statsTable(records: StatsRecord[]): string {
  return formatTable(STATS_HEADERS, records.map(statsRow));
}
