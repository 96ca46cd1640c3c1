/**
 * Detach (-d): `runtime run --detach` with the container's stdout and stderr
 * appended to <container dir>/ctr.log, then a `container` record and
 * state.json beside the bundle for the control plane, which stops and removes
 * the container later (there is no shim: its exit code is not recorded).
 *
 * Failure: the runtime's error mapped by runtimeFailure, or ERR_SPAWN_FAILED
 * naming its exit code when it logged no reason; the caller cleans up then.
 * On success nothing is cleaned up: the container runs on.
 */
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import { RECORD_VERSION, type ContainerRecord } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import type { StdioSlot } from '@conveyor/lib-common/subprocess';
import {
  runtimeErrors,
  runtimeFailure,
  runtimeLogArgs,
  runtimeRun,
  runtimeStatePid,
  type Runtime,
  type RuntimeRunOptions,
} from '@conveyor/lib-common/container/runtime';

export interface DetachedRun {
  runtime: Runtime;
  record: Record<string, unknown>;
  store: Store;
  paths: ContainerPaths;
  cgroupsPath: string;
  ephemeral: boolean;
  name?: string;
  stdin: StdioSlot;
  /** The runtime's JSON log. */
  logPath: string;
  onStart: RuntimeRunOptions['onStart'];
}

/** Starts the container in the background; resolves to its `container` record once it runs. */
export async function runDetached(run: DetachedRun): Promise<ContainerRecord> {
  const { runtime, record, paths } = run;
  const id = paths.id;
  const createdAt = new Date().toISOString();
  const ctrLog = join(paths.containerDir, 'ctr.log');
  const logFd = openSync(ctrLog, 'a', 0o640);
  let code: number;
  try {
    code = await runtimeRun(runtime, [...runtimeLogArgs(runtime.runtime, run.logPath), 'run', '--bundle', paths.containerDir, '--detach', id], {
      stdio: [run.stdin, logFd, logFd],
      ownSession: false,
      onStart: run.onStart,
    });
  } finally {
    closeSync(logFd);
  }
  if (code !== 0) {
    const errors = await runtimeErrors(run.logPath);
    throw errors.length > 0 ? runtimeFailure(errors.at(-1)!) : new ConveyorError('ERR_SPAWN_FAILED', `${runtime.runtime} exited with ${code}`);
  }
  const pid = await runtimeStatePid(runtime, id);
  const containerRecord: ContainerRecord = {
    type: 'container',
    v: RECORD_VERSION,
    id,
    ...(run.name ? { name: run.name } : {}),
    ...(typeof record.ref === 'string' ? { ref: record.ref } : {}),
    ...(typeof record.digest === 'string' ? { image: record.digest } : {}),
    status: 'running',
    ...(pid ? { pid } : {}),
    createdAt,
    startedAt: new Date().toISOString(),
    bundle: paths.containerDir,
    store: run.store.root,
  };
  await writeFile(
    join(paths.containerDir, 'state.json'),
    JSON.stringify(
      {
        ...containerRecord,
        runtime: runtime.runtime,
        runtimeRoot: runtime.runtimeRoot,
        cgroupsPath: run.cgroupsPath,
        ephemeralMount: run.ephemeral,
        rootfs: paths.merged,
        log: ctrLog,
      },
      null,
      2,
    ) + '\n',
  );
  return containerRecord;
}
