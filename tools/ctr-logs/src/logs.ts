/**
 * ctr-logs' work: the entries of a container's log (lib-common/container/log:
 * ctr.log and its rotated files), filtered by --since, cut to the last
 * --tail, then with --follow the entries written after, across rotations,
 * until the container has ended and its log is drained. Each entry goes to
 * the sink of its stream; the log file is found from the store by the
 * container's id, never from a path in its state.
 *
 * Failure: the store's read errors; a log that does not exist (a container
 * run in the foreground) prints nothing.
 */
import { closeSync } from 'node:fs';
import { join } from 'node:path';
import { RECORD_VERSION } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { followLog, LOG_FILE, type LogEntry, type LogStream, readLogHistory } from '@conveyor/lib-common/container/log';
import { isRunning, readState } from '@conveyor/lib-common/container/state';

export interface LogsOptions {
  follow: boolean;
  /** The last N entries only (before following). */
  tail?: number;
  /** Entries from this instant on (ms since the epoch). */
  since?: number;
  /** Between looks at a followed log, in ms. */
  intervalMs?: number;
  signal?: AbortSignal;
}

/** Where entries go: the text of each stream, or one `log` record per entry. */
export interface LogsSink {
  entry: (entry: LogEntry) => Promise<void>;
}

/** The `log` record of an entry (ctr-logs --log-format=json). */
export interface LogRecord {
  type: 'log';
  v: number;
  id: string;
  stream: LogStream;
  log: string;
  time: string;
}

export function logRecord(id: string, entry: LogEntry): LogRecord {
  return { type: 'log', v: RECORD_VERSION, id, stream: entry.stream, log: entry.log, time: entry.time };
}

/** Entries at or after `since`, the last `tail` of them. Pure. */
export function selectEntries(entries: LogEntry[], options: { since?: number; tail?: number }): LogEntry[] {
  const since = options.since;
  const recent = since === undefined ? entries : entries.filter((e) => Date.parse(e.time) >= since);
  return options.tail === undefined ? recent : options.tail === 0 ? [] : recent.slice(-options.tail);
}

/** Prints the log of container `id`; with follow, until it has ended. */
export async function printLogs(store: Store, id: string, options: LogsOptions, sink: LogsSink): Promise<void> {
  const path = join(store.containerDir(id), LOG_FILE);
  const history = readLogHistory(path);
  if (!options.follow) {
    if (history.cursor.fd !== undefined) closeSync(history.cursor.fd);
    for (const entry of selectEntries(history.entries, options)) await sink.entry(entry);
    return;
  }
  // The follower goes on from where the history ends: nothing is printed twice or lost between the two.
  const follow = followLog(
    path,
    {
      intervalMs: options.intervalMs,
      signal: options.signal,
      active: async () => {
        const state = await readState(store, id).catch(() => undefined);
        return state !== undefined && isRunning(state);
      },
    },
    history.cursor,
  );
  try {
    for (const entry of selectEntries(history.entries, options)) await sink.entry(entry);
  } catch (error) {
    // The follower has not started, so its fd is still ours to close.
    if (history.cursor.fd !== undefined) closeSync(history.cursor.fd);
    throw error;
  }
  for await (const entry of follow) {
    if (options.since === undefined || Date.parse(entry.time) >= options.since) await sink.entry(entry);
  }
}
