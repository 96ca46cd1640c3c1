/**
 * vol-ls's work: the store's volumes as `volume` records, with the containers
 * that use each, filtered as `docker volume ls --filter` does (dangling=true:
 * used by no container; name=TEXT: the name contains TEXT). Library code: a
 * store in, records out.
 *
 * Failure: ERR_USAGE for an unknown filter key or value; a volume whose
 * metadata cannot be read is skipped with a warning.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { Store } from '@conveyor/lib-common/store';
import { listVolumes, type VolumeRecord, volumeRecordOf, volumeSize, volumeUsers } from '@conveyor/lib-common/container/volumes';

export interface VolumeFilters {
  dangling?: boolean;
  /** Substrings, any of which the name must contain. */
  names: string[];
}

/** `--filter KEY=VALUE` entries: dangling=true|false (the last wins), name=TEXT (repeatable: any matches). */
export function parseFilters(entries: string[]): VolumeFilters {
  const filters: VolumeFilters = { names: [] };
  for (const entry of entries) {
    const at = entry.indexOf('=');
    const key = at < 0 ? entry : entry.slice(0, at);
    const value = at < 0 ? '' : entry.slice(at + 1);
    if (key === 'dangling') {
      if (!['true', 'false', '1', '0'].includes(value))
        throw new ConveyorError('ERR_USAGE', `--filter dangling must be true or false, got ${JSON.stringify(value)}`);
      filters.dangling = value === 'true' || value === '1';
    } else if (key === 'name') {
      if (value === '') throw new ConveyorError('ERR_USAGE', '--filter name needs a value');
      filters.names.push(value);
    } else {
      throw new ConveyorError('ERR_USAGE', `unknown filter ${JSON.stringify(key)}`, { hint: 'dangling=true|false or name=TEXT' });
    }
  }
  return filters;
}

/** Whether a record passes the filters. */
export function matches(record: VolumeRecord, filters: VolumeFilters): boolean {
  if (filters.dangling !== undefined && (record.usedBy.length === 0) !== filters.dangling) return false;
  if (filters.names.length > 0 && !filters.names.some((n) => record.name.includes(n))) return false;
  return true;
}

/** The store's volumes, by name, as records that pass the filters; with `size`, each one's bytes (du). */
export async function listVolumeRecords(
  store: Store,
  options: { filters: VolumeFilters; size?: boolean; warn?: (message: string) => void },
): Promise<VolumeRecord[]> {
  const users = await volumeUsers(store);
  const records: VolumeRecord[] = [];
  for (const info of await listVolumes(store, { warn: options.warn })) {
    const record = volumeRecordOf(store, info, users.get(info.name) ?? []);
    if (!matches(record, options.filters)) continue;
    records.push(options.size ? { ...record, ...sizeField(await volumeSize(store, info.name)) } : record);
  }
  return records;
}

function sizeField(size: number | undefined): { size?: number } {
  return size === undefined ? {} : { size };
}
