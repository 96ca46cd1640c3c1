/**
 * Listing the store's containers as `container` records, newest first: the
 * state of each as observed now (a container whose supervisor or process is
 * gone is exited, never running), and a `dead` record for a directory
 * without state (a ctr-spawn killed before it wrote one). Library code: takes
 * a Store and options, returns records, never prints.
 *
 * Failure: a state file that cannot be read is reported through `warn` and
 * listed as `dead`; only an unreadable containers/ directory throws.
 */
import { listContainers } from '@conveyor/lib-common/container/state';
import { containerRecordOf, type ListedContainer } from '@conveyor/lib-common/container/targets';
import type { Store } from '@conveyor/lib-common/store';
import { type Filters, matchesFilters } from './filter.js';

export interface ListOptions {
  /** Every container, not only running ones (-a). */
  all?: boolean;
  filters?: Filters;
  warn?: (message: string) => void;
}

/** The containers to list, newest first. A status filter lists every status, as `docker ps -f status=…` does. */
export async function listContainerRecords(store: Store, options: ListOptions = {}): Promise<ListedContainer[]> {
  const filters = options.filters ?? new Map();
  const all = options.all || filters.has('status');
  const records = (await listContainers(store, { warn: options.warn })).map((entry) => containerRecordOf(store, entry));
  return records
    .filter((record) => (all || record.status === 'running') && matchesFilters(record, filters))
    .sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? '') || a.id.localeCompare(b.id));
}
