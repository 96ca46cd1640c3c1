/** A running container for ctr-exec's tests: started with the built ctr-spawn -d, removed with everything it left. */
import { existsSync } from 'node:fs';
import { Store } from '@conveyor/lib-common/store';
import { claimName, isRunning, nameHolder, readState } from '@conveyor/lib-common/container/state';
import { removeContainerFully } from '@conveyor/lib-common/container/remove';
import { runTool } from '../../../test/helpers/tools.js';

/**
 * Our environment without tap's NODE_OPTIONS (its process-info loader), which
 * would make every tool we run start 3-4 times slower.
 */
export const toolEnv: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => key !== 'NODE_OPTIONS' && !key.startsWith('_TAPJS_')),
);

export interface Started {
  id: string;
  /** Host pid of the container's init. */
  pid: number;
}

/** `ctr-spawn -d [args] -- command` from `rootfs` into store `root`; its name is claimed if ctr-spawn did not. */
export async function startDetached(root: string, rootfs: object, args: string[], command: string[]): Promise<Started> {
  const run = await runTool('ctr-spawn', ['--root', root, '-d', ...args, '--', ...command], { input: `${JSON.stringify(rootfs)}\n`, env: toolEnv });
  const record = run.records.find((r) => r.type === 'container');
  if (run.code !== 0 || !record) throw new Error(`ctr-spawn -d exited ${run.code}: ${run.stderr}`);
  const store = new Store(root);
  const name = args[args.indexOf('--name') + 1];
  // ctr-spawn -d did not claim names (names/) before the supervisor; lookups by name need the claim.
  if (args.includes('--name') && (await nameHolder(store, name)) === undefined) await claimName(store, name, record.id);
  return { id: record.id, pid: record.pid };
}

/**
 * Removes the container: runtime state (killing it), cgroups, mounts, directory, name. A container
 * that ended may be being cleaned up by its supervisor at the same moment: a failure is retried
 * once, and is no failure when the directory is gone by then.
 */
export async function removeDetached(root: string, id: string): Promise<void> {
  const store = new Store(root);
  const remove = async () => removeContainerFully(store, { id, dir: store.containerDir(id), state: await readState(store, id).catch(() => undefined) });
  try {
    await remove();
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 300));
    if (existsSync(store.containerDir(id))) await remove();
  }
}

/** Whether the container's state (as observed: its process checked) says it runs. */
export async function stillRunning(root: string, id: string): Promise<boolean> {
  const state = await readState(new Store(root), id);
  return state !== undefined && isRunning(state);
}
