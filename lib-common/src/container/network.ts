/**
 * A container's network as it lives in its directory, and its teardown,
 * shared by ctr-spawn (the end of a foreground run, the supervisor's end) and
 * ctr-rm (removeContainerFully: leftovers of a SIGKILLed supervisor):
 *
 *   containers/<id>/netns         the network namespace, bind-mounted (nsfs) on an empty file
 *   containers/<id>/network.json  the userspace network helper that serves it (pasta or
 *                                 slirp4netns): name, pid and start time
 *
 * The helper is stopped only when the pid still names the process recorded
 * (start time) and that process is a network helper by name: a forged or
 * stale network.json never makes us kill a stranger.
 *
 * Failure: tearDownNetwork resolves to warnings (what it could not stop or
 * unmount); it throws nothing.
 */
import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTime } from '../lock.js';
import { mountsUnder } from '../overlay/mount.js';
import { runProcess } from '../subprocess.js';
import { processRuns } from './state.js';

/** The network namespace file of a container directory. */
export const NETNS_FILE = 'netns';
/** The record of the helper process (NetworkHelper). */
export const NETWORK_FILE = 'network.json';
/** The helper's own messages. */
export const NETWORK_LOG = 'network.log';

/** Programs that may serve a container's network: only these are ever signalled. */
export const HELPER_NAMES = ['pasta', 'passt', 'slirp4netns'] as const;
export type HelperName = (typeof HELPER_NAMES)[number];

/** network.json. */
export interface NetworkHelper {
  name: HelperName;
  pid: number;
  /** /proc/<pid>/stat start time: a recycled pid is another process. */
  startTime?: string;
}

/** The helper's comm is its program's name (pasta may run as pasta.avx2). */
function isHelperProcess(pid: number): boolean {
  let comm: string;
  try {
    comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return false;
  }
  return HELPER_NAMES.some((name) => comm === name || comm.startsWith(`${name}.`));
}

/** Reads network.json; undefined when missing or not a helper's record. */
export async function readNetworkHelper(containerDir: string): Promise<NetworkHelper | undefined> {
  const text = await readFile(join(containerDir, NETWORK_FILE), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as Partial<NetworkHelper>;
    if (!HELPER_NAMES.includes(value.name as HelperName) || !Number.isSafeInteger(value.pid) || (value.pid as number) <= 1) return undefined;
    if (value.startTime !== undefined && (typeof value.startTime !== 'string' || !/^\d+$/.test(value.startTime))) return undefined;
    return { name: value.name as HelperName, pid: value.pid as number, ...(value.startTime ? { startTime: value.startTime } : {}) };
  } catch {
    return undefined;
  }
}

/** The record of a helper that runs now as `pid`. */
export function helperRecord(name: HelperName, pid: number): NetworkHelper {
  const started = startTime(pid);
  return { name, pid, ...(started ? { startTime: started } : {}) };
}

/** Whether the recorded helper still runs (same pid, same start time, a helper by name). */
export function helperRuns(helper: NetworkHelper): boolean {
  return helper.startTime !== undefined && processRuns(helper.pid, helper.startTime) && isHelperProcess(helper.pid);
}

/**
 * Sends a signal to a process: the caller's process.kill (a tool's cli.ts
 * passes it in: library modules read no process facts, test/architecture),
 * or else kill(1). Throws nothing: a failure is a process gone meanwhile.
 */
export type SignalSender = (pid: number, signal: 'SIGTERM' | 'SIGKILL') => void;

/** Stops the helper: SIGTERM, then SIGKILL after `graceMs`. Resolves to whether it is gone. */
export async function stopHelper(helper: NetworkHelper, graceMs = 2000, send?: SignalSender): Promise<boolean> {
  if (!helperRuns(helper)) return true;
  const signal = async (name: 'TERM' | 'KILL') => {
    if (!send) return void (await runProcess('kill', [`-${name}`, String(helper.pid)]));
    try {
      send(helper.pid, `SIG${name}`);
    } catch {
      // gone meanwhile
    }
  };
  await signal('TERM');
  for (let waited = 0, delay = 2; waited < graceMs; waited += delay, delay = Math.min(delay * 2, 50)) {
    await sleep(delay);
    if (!processRuns(helper.pid, helper.startTime)) return true;
  }
  if (helperRuns(helper)) await signal('KILL');
  for (let i = 0; i < 40; i++) {
    if (!processRuns(helper.pid, helper.startTime)) return true;
    await sleep(25);
  }
  return false;
}

/**
 * Unmounts the namespace file (lazily when something still holds it open:
 * the namespace then goes when its last user does) and removes it.
 */
export async function removeNetns(path: string): Promise<string[]> {
  const warnings: string[] = [];
  if ((await mountsUnder(path)).length > 0) {
    const result = await runProcess('umount', [path]);
    if (result.failed) {
      const lazy = await runProcess('umount', ['--lazy', path]);
      if (lazy.failed) warnings.push(`unmount of ${path} failed: ${lazy.stderr || lazy.shortMessage}`);
    }
  }
  if ((await mountsUnder(path)).length === 0) await rm(path, { force: true });
  return warnings;
}

/** Stops the container's network helper, if it has one, and forgets it (network.json); resolves to warnings. */
export async function stopNetworkHelper(containerDir: string, send?: SignalSender): Promise<string[]> {
  const helper = await readNetworkHelper(containerDir);
  const stopped = helper ? await stopHelper(helper, undefined, send) : true;
  await rm(join(containerDir, NETWORK_FILE), { force: true });
  return stopped ? [] : [`${helper!.name} (pid ${helper!.pid}) did not stop`];
}

/**
 * Stops the container's network helper and removes its network namespace;
 * idempotent. Resolves to warnings. The helper first: it holds the namespace
 * file open, which keeps its mount busy. `send` signals the helper
 * (SignalSender; kill(1) without).
 */
export async function tearDownNetwork(containerDir: string, send?: SignalSender): Promise<string[]> {
  const warnings = await stopNetworkHelper(containerDir, send);
  warnings.push(...(await removeNetns(join(containerDir, NETNS_FILE))));
  return warnings;
}
