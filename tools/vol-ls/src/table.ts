/**
 * vol-ls's table for terminals: `docker volume ls`'s DRIVER and VOLUME NAME,
 * plus what it lacks (who uses the volume, when it was made, its size with
 * --size). Library code: records in, text out; nothing fails.
 */
import { formatBytes } from '@conveyor/lib-common/bytes';
import type { VolumeRecord } from '@conveyor/lib-common/container/volumes';
import { formatTable, timeAgo } from '@conveyor/lib-common/table';

export function volumeTable(records: VolumeRecord[], options: { size?: boolean; now?: number } = {}): string {
  const headers = ['DRIVER', 'VOLUME NAME', 'CREATED', 'USED BY', ...(options.size ? ['SIZE'] : [])];
  const rows = records.map((r) => [
    'local',
    r.name,
    timeAgo(r.createdAt, options.now),
    r.usedBy.length === 0 ? '-' : r.usedBy.map((id) => id.slice(0, 12)).join(','),
    ...(options.size ? [r.size === undefined ? '-' : formatBytes(r.size)] : []),
  ]);
  return formatTable(headers, rows);
}
