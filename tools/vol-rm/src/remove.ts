/**
 * vol-rm's work: the volumes to remove (arguments, or stdin: `volume` records
 * by `name` only, bare names one per line; other records pass through),
 * removed one at a time, refused while a container (running or stopped) uses
 * one unless forced, as `docker volume rm`; and --prune, the volumes no
 * container uses (anonymous ones only unless `all`), as `docker volume prune`.
 *
 * Nothing in a record but its name is used, and the name must be a volume
 * name (no `/`, no `..`): the directory is derived from the store, never taken
 * from the record's `mountpoint`.
 *
 * Failure: per volume, ERR_VOLUME_NOT_FOUND, ERR_VOLUME_IN_USE and a record
 * without a valid name (ERR_INPUT_RECORD naming `stdin:N`) are reported and
 * the next one is processed; a line that is not JSON ends the input
 * (ERR_INPUT_JSON). The exit code is the first failure's.
 */
import type { Readable } from 'node:stream';
import { ConveyorError, EXIT, toConveyorError } from '@conveyor/lib-common/errors';
import { readLines, type RecordSink } from '@conveyor/lib-common/ndjson';
import { badRecord, RECORD_VERSION } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { getVolume, isVolumeName, listVolumes, removeVolume, volumeUsers } from '@conveyor/lib-common/container/volumes';

/** What vol-rm prints for each volume it removed. */
export interface RemovedVolumeRecord {
  type: 'removed';
  v: number;
  volume: string;
  store: string;
}

export interface RemoveVolumeOptions {
  /** Remove even while containers use it (their mounts keep pointing at a deleted directory). */
  force?: boolean;
}

function removedRecord(store: Store, name: string): RemovedVolumeRecord {
  return { type: 'removed', v: RECORD_VERSION, volume: name, store: store.root };
}

/** Removes one volume by name; resolves to its `removed` record. */
export async function removeOneVolume(store: Store, name: string, options: RemoveVolumeOptions = {}): Promise<RemovedVolumeRecord | undefined> {
  if (!isVolumeName(name)) throw new ConveyorError('ERR_USAGE', `invalid volume name ${JSON.stringify(name)}`, { hint: 'list volumes with vol-ls' });
  try {
    await getVolume(store, name);
  } catch (error) {
    // docker volume rm -f: a volume that is not there is not an error.
    if (options.force && (error as ConveyorError).code === 'ERR_VOLUME_NOT_FOUND') return undefined;
    throw error;
  }
  const users = (await volumeUsers(store)).get(name) ?? [];
  if (users.length > 0 && !options.force) {
    throw new ConveyorError('ERR_VOLUME_IN_USE', `volume ${name} is in use by container ${users.map((id) => id.slice(0, 12)).join(', ')}`, {
      hint: 'remove the container first (ctr-rm), or the volume with -f',
    });
  }
  await removeVolume(store, name);
  return removedRecord(store, name);
}

/** One thing to act on: a name (with what named it), a bad record, or a record passed through. */
export type VolumeTarget =
  | { kind: 'volume'; query: string; name: string }
  | { kind: 'failed'; error: ConveyorError }
  | { kind: 'passthrough'; record: Record<string, unknown> };

/** The volumes named by arguments, or else by stdin. */
export async function* volumeTargets(args: string[], input: Readable): AsyncGenerator<VolumeTarget> {
  if (args.length > 0) {
    for (const name of args) yield { kind: 'volume', query: name, name };
    return;
  }
  for await (const line of readLines(input, { allowBare: true })) {
    const where = `${line.source}:${line.line}`;
    if (!line.record) {
      yield { kind: 'volume', query: where, name: line.text };
      continue;
    }
    if (line.record.type !== 'volume') {
      yield { kind: 'passthrough', record: line.record };
      continue;
    }
    const name = line.record.name;
    if (!isVolumeName(name)) yield { kind: 'failed', error: badRecord(where, `volume record without a valid name: ${JSON.stringify(name)}`) };
    else yield { kind: 'volume', query: where, name };
  }
}

/**
 * Removes every target, reporting each failure through `report` and going on.
 * Resolves to the exit code: 0, or the first failure's.
 */
export async function removeTargets(
  store: Store,
  targets: AsyncIterable<VolumeTarget>,
  io: { out: RecordSink; report: (error: ConveyorError) => void; force?: boolean },
): Promise<number> {
  let code: number = EXIT.OK;
  const fail = (error: ConveyorError) => {
    io.report(error);
    if (code === EXIT.OK) code = error.exitCode;
  };
  for await (const target of targets) {
    if (target.kind === 'passthrough') await io.out.write(target.record);
    else if (target.kind === 'failed') fail(target.error);
    else {
      try {
        const record = await removeOneVolume(store, target.name, { force: io.force });
        if (record) await io.out.write(record);
      } catch (error) {
        const err = toConveyorError(error);
        fail(target.query === target.name ? err : new ConveyorError(err.code, `${target.query}: ${err.message}`, { hint: err.hint }));
      }
    }
  }
  return code;
}

/** docker volume prune: every volume no container uses; anonymous ones only unless `all`. */
export async function pruneVolumes(store: Store, options: { all?: boolean; out: RecordSink }): Promise<void> {
  const users = await volumeUsers(store);
  for (const volume of await listVolumes(store)) {
    if ((users.get(volume.name) ?? []).length > 0) continue;
    if (!volume.anonymous && !options.all) continue;
    await removeVolume(store, volume.name);
    await options.out.write(removedRecord(store, volume.name));
  }
}
