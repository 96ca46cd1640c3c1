/**
 * The containers a control-plane tool acts on (ctr-stop, ctr-kill, ctr-rm):
 * its arguments, or else its stdin, turned into resolved ContainerEntries one
 * at a time, and the `container` record a tool prints for each.
 *
 * Arguments and bare stdin lines are ids, unique id prefixes or names
 * (`ctr-ls -q | ctr-rm`). A `container` record on stdin is identified by its
 * `id` alone, which must be a full container id and is looked up in the
 * store: nothing else in the record (its `bundle`, `store`, `pid`) is trusted.
 * Records of other types pass through unchanged, in their place.
 *
 * Failure: a container that cannot be resolved (ERR_CONTAINER_NOT_FOUND,
 * ERR_CONTAINER_AMBIGUOUS) or a `container` record without a valid id
 * (ERR_INPUT_RECORD naming `stdin:N`) is yielded as a failed item and the
 * next one is read; a line that is not JSON ends the stream with
 * ERR_INPUT_JSON (readLines), since what follows it cannot be trusted to be
 * in step. actOnTargets turns the failures into messages and an exit code.
 */
import type { Readable } from 'node:stream';
import { ConveyorError, EXIT, toConveyorError } from '../errors.js';
import type { Logger } from '../log.js';
import { readLines, type RecordSink } from '../ndjson.js';
import { pipeline } from '../pipeline.js';
import { badRecord, type ContainerRecord, RECORD_VERSION } from '../records.js';
import { isContainerId, type Store } from '../store.js';
import { type ContainerEntry, type ContainerState, imageOf, resolveContainer } from './state.js';

/** The status ctr-ls gives a container directory without a state (a ctr-spawn killed early): Docker's word. */
export const LEFTOVER_STATUS = 'dead';

/** A `container` record as the control-plane tools print it: the documented fields of the state, nothing internal. */
export interface ListedContainer extends Omit<ContainerRecord, 'status'> {
  status: ContainerRecord['status'] | typeof LEFTOVER_STATUS;
  /** The command it runs. */
  command?: string[];
  /** Why the status is what it is when the container's end was not recorded. */
  statusDetail?: string;
}

export type TargetItem =
  /** A container to act on; `query` is what named it (an argument, or `stdin:N`). */
  | { kind: 'container'; query: string; entry: ContainerEntry }
  /** A container that could not be found or a record that is not valid: reported, then the next. */
  | { kind: 'failed'; query: string; error: ConveyorError }
  /** A record of another type, passed through unchanged. */
  | { kind: 'passthrough'; record: Record<string, unknown> };

/** The `container` record of an entry: the observed state's public fields, or a `dead` record for a leftover. */
export function containerRecordOf(store: Store, entry: ContainerEntry): ListedContainer {
  const state = entry.state;
  if (!state) {
    return {
      type: 'container',
      v: RECORD_VERSION,
      id: entry.id,
      status: LEFTOVER_STATUS,
      statusDetail: 'no state: a ctr-spawn that did not finish',
      store: store.root,
    };
  }
  return publicFields(state, store);
}

function publicFields(state: ContainerState, store: Store): ListedContainer {
  const { digest, ref } = imageOf(state);
  const image = ref ?? digest;
  const record: ListedContainer = {
    type: 'container',
    v: RECORD_VERSION,
    id: state.id,
    ...(state.name ? { name: state.name } : {}),
    ...(image ? { image } : {}),
    ...(digest ? { imageDigest: digest } : {}),
    status: state.status,
    ...(state.status === 'running' && state.pid ? { pid: state.pid } : {}),
    ...(state.exitCode !== undefined ? { exitCode: state.exitCode } : {}),
    ...(state.signal ? { signal: state.signal } : {}),
    ...(state.oomKilled !== undefined ? { oomKilled: state.oomKilled } : {}),
    ...(state.restartCount ? { restartCount: state.restartCount } : {}),
    ...(Array.isArray(state.command) ? { command: state.command } : {}),
    ...(state.createdAt ? { createdAt: state.createdAt } : {}),
    ...(state.startedAt ? { startedAt: state.startedAt } : {}),
    ...(state.finishedAt ? { finishedAt: state.finishedAt } : {}),
    ...(state.statusDetail ? { statusDetail: state.statusDetail } : {}),
    ...(state.bundle ? { bundle: state.bundle } : {}),
    ...(typeof state.network === 'string' ? { network: state.network } : {}),
    // As pid: a stopped container's ports are free again (docker ps shows none).
    ...(state.status === 'running' && Array.isArray(state.ports) && state.ports.length > 0 ? { ports: state.ports } : {}),
    store: store.root,
  };
  return record;
}

async function resolveItem(store: Store, query: string, label: string): Promise<TargetItem> {
  try {
    return { kind: 'container', query: label, entry: await resolveContainer(store, query) };
  } catch (error) {
    return { kind: 'failed', query: label, error: toConveyorError(error) };
  }
}

/** One stdin line's target: a bare id/name, a `container` record's id, or a record to pass through. */
async function lineItem(store: Store, line: { record?: Record<string, unknown>; text: string; line: number; source: string }): Promise<TargetItem> {
  const where = `${line.source}:${line.line}`;
  const record = line.record;
  if (!record) return resolveItem(store, line.text, line.text);
  if (record.type !== 'container') return { kind: 'passthrough', record };
  if (!isContainerId(record.id)) {
    return { kind: 'failed', query: where, error: badRecord(where, 'a container record needs `id`: 64 lowercase hex characters', 'pipe records from ctr-ls') };
  }
  const item = await resolveItem(store, record.id, where);
  if (item.kind === 'failed' && item.error.code === 'ERR_CONTAINER_NOT_FOUND' && typeof record.store === 'string' && record.store !== store.root) {
    const hint = `the record is from the store ${record.store}; pass --root ${record.store}`;
    return { kind: 'failed', query: where, error: new ConveyorError('ERR_CONTAINER_NOT_FOUND', item.error.message, { hint }) };
  }
  return item;
}

/**
 * The targets of a run: each argument, or (with none) each stdin line, in
 * order and resolved as it is reached, so a pipeline acts as records arrive.
 */
export async function* targetsOf(store: Store, args: string[], input?: Readable): AsyncGenerator<TargetItem> {
  if (args.length > 0) {
    for (const arg of args) yield resolveItem(store, arg, arg);
    return;
  }
  if (!input) return;
  for await (const line of readLines(input, { allowBare: true, maxLineBytes: 1024 * 1024 })) yield lineItem(store, line);
}

export interface ActOptions {
  store: Store;
  /** Ids, prefixes or names; when empty, stdin is read. */
  args: string[];
  input?: Readable;
  out: RecordSink;
  log: Logger;
  /** Does the work on one container; resolves to the record to print, or undefined for none. */
  act: (entry: ContainerEntry) => Promise<object | undefined>;
  /** How many containers are acted on at once (ctr-stop waits on many in parallel, as Docker does); default 1. */
  concurrency?: number;
}

/**
 * Acts on every target: prints what `act` returns and passes other records
 * through as they are reached; a failure is logged (`tool: <query>: message
 * (hint)`) and the next target is still processed, as Docker does. With a
 * concurrency above 1, records are printed as their containers finish.
 * Resolves to the exit code: 0, or the first failure's (1 for a container,
 * 2 for bad input).
 */
export async function actOnTargets(options: ActOptions): Promise<number> {
  const { store, out, log } = options;
  const limit = Math.max(1, options.concurrency ?? 1);
  let exitCode: number = EXIT.OK;
  const fail = (query: string, error: ConveyorError) => {
    const named = error.message.includes(query)
      ? error
      : new ConveyorError(error.code, `${query}: ${error.message}`, { hint: error.hint, details: error.details });
    log.error(named);
    // The tools downstream hear of it too (an `error` record in the stream), and end with its exit code.
    void pipeline.reportOwn(named);
    if (exitCode === EXIT.OK) exitCode = error.exitCode;
  };
  const running = new Set<Promise<void>>();
  const start = (query: string, entry: ContainerEntry) => {
    const task: Promise<void> = options
      .act(entry)
      .then((record) => (record ? out.write(record) : undefined))
      .catch((error) => fail(query, toConveyorError(error)))
      .finally(() => running.delete(task));
    running.add(task);
  };
  try {
    for await (const item of targetsOf(store, options.args, options.input)) {
      if (item.kind === 'passthrough') await out.write(item.record);
      else if (item.kind === 'failed') fail(item.query, item.error);
      else {
        while (running.size >= limit) await Promise.race(running);
        start(item.query, item.entry);
      }
    }
  } catch (error) {
    // A line that is not JSON: what came before it is done, nothing after it is read.
    fail('stdin', toConveyorError(error));
  }
  await Promise.all(running);
  return exitCode;
}
