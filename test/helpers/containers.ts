/**
 * Detached containers for the control-plane tools' tests (ctr-ls, ctr-stop,
 * ctr-kill, ctr-rm, ctr-exec, ctr-stats): started with the built ctr-spawn -d from a rootfs
 * record, read back from their state.json, and checked for what a removal
 * may not leave behind (mounts, cgroups, runc state, the directory, a name).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { removeContainerFully } from '../../lib-common/dist/container/remove.js';
import { isRunning, readState } from '../../lib-common/dist/container/state.js';
import { Store } from '../../lib-common/dist/store.js';
import { runTool } from './tools.js';

export const RUNTIME_ROOT = '/run/conveyor-runc';

/** Starts `ctr-spawn -d [args] -- command` on `rootfs` in store `root`; resolves to its container record. */
export async function startDetached(root: string, rootfs: object, args: string[], command: string[] = ['sleep', '60']): Promise<Record<string, any>> {
  const run = await runTool('ctr-spawn', ['--root', root, '-d', ...args, '--', ...command], { input: JSON.stringify(rootfs) + '\n' });
  const record = run.records.find((r) => r.type === 'container');
  if (run.code !== 0 || !record) throw new Error(`ctr-spawn -d exited ${run.code}: ${run.stderr}`);
  return record;
}

/** A container's state.json, or undefined. */
export function stateOf(root: string, id: string): Record<string, any> | undefined {
  const path = join(root, 'containers', id, 'state.json');
  return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : undefined;
}

/** Polls until `done(state)` or about `ms` pass; resolves to the last state. */
export async function waitForState(root: string, id: string, done: (state: Record<string, any> | undefined) => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  let state = stateOf(root, id);
  while (!done(state) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    state = stateOf(root, id);
  }
  return state;
}

/**
 * Polls the container's log (ctr.log) until its output has a line `line` or about `ms` pass; resolves
 * to whether it came. For a shell that traps a signal and then says so: a namespace's pid 1 drops the
 * signals it has no handler for, and ctr-spawn -d returns before the shell has run its `trap`.
 */
export async function waitForLogLine(root: string, id: string, line: string, ms = 10_000): Promise<boolean> {
  const path = join(root, 'containers', id, 'ctr.log');
  const deadline = Date.now() + ms;
  for (;;) {
    const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
    const said = text.split('\n').some((entry) => {
      try {
        return JSON.parse(entry).log === `${line}\n`;
      } catch {
        return false; // a line still being written
      }
    });
    if (said) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Everything of container `id` still on the host: mounts, cgroup dirs, runc state, its directory, names held. */
export function leftoversOf(root: string, id: string): string[] {
  const found: string[] = [];
  const dir = join(root, 'containers', id);
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point && (point === dir || point.startsWith(dir + '/'))) found.push(`mount ${point}`);
  }
  for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
    const cgroup = join('/sys/fs/cgroup', hierarchy, 'conveyor', id);
    if (existsSync(cgroup)) found.push(`cgroup ${cgroup}`);
  }
  if (existsSync(join(RUNTIME_ROOT, id))) found.push(`runc state ${join(RUNTIME_ROOT, id)}`);
  if (existsSync(dir)) found.push(`directory ${dir}`);
  const names = join(root, 'names');
  if (existsSync(names)) {
    for (const name of readdirSync(names)) if (readFileSync(join(names, name), 'utf8').trim() === id) found.push(`name ${name}`);
  }
  return found;
}

/** Kills whatever of container `id` still runs and forgets its runc state (teardown after a failed test). */
export function forceDelete(id: string): void {
  try {
    execFileSync('runc', ['--root', RUNTIME_ROOT, 'delete', '--force', id], { stdio: 'ignore' });
  } catch {
    // not there: nothing to do
  }
}

/**
 * Teardown of a test store's containers: each one's runc container killed
 * and deleted, and its cgroup dirs removed, before removeStore unmounts and
 * deletes the rest.
 */
export async function deleteAllContainers(root: string): Promise<void> {
  const dir = join(root, 'containers');
  const ids = existsSync(dir) ? readdirSync(dir).filter((id) => /^[0-9a-f]{64}$/.test(id)) : [];
  for (const id of ids) forceDelete(id);
  // The supervisors see their containers end and finish; give them a moment before the store goes.
  if (ids.length > 0) await new Promise((r) => setTimeout(r, 300));
  for (const id of ids) {
    for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
      const cgroup = join('/sys/fs/cgroup', hierarchy, 'conveyor', id);
      try {
        rmdirSync(cgroup);
      } catch {
        // gone, or not ours to force
      }
    }
  }
}

/**
 * Removes container `id`: runtime state (killing it), cgroups, mounts, directory, name. A container
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
