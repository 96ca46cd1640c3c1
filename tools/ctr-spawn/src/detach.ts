/**
 * Detach (-d): hands the prepared container (bundle and state.json written,
 * status `created`) to a supervisor (supervisor/supervise.ts), started as
 * `node supervisor/cli.js STORE ID` in its own session so that it outlives
 * ctr-spawn, a closed pipe and a terminal hang-up. Its stdout is a pipe to
 * us that carries one JSON line, the hand-off: the state of the running
 * container, or the error that kept it from starting (the supervisor has
 * cleaned up by then). Its stderr is supervisor.log in the container
 * directory.
 *
 * Failure: the supervisor's error as a ConveyorError (125/126/127 in
 * cli.ts); ERR_SPAWN_FAILED when it ends without a word (the caller cleans
 * up then). Signals that reach us meanwhile go to the supervisor, which
 * passes them to the container.
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConveyorError, ERROR_CODES, type ErrorCode } from '@conveyor/lib-common/errors';
import type { Store } from '@conveyor/lib-common/store';
import type { ContainerState } from '@conveyor/lib-common/container/state';
import { startProcess, type Subprocess } from '@conveyor/lib-common/subprocess';
import { SUPERVISOR_LOG } from './cleanup.js';
import type { Handoff } from './supervisor/supervise.js';

/** The supervisor's entry, beside this module in dist/. */
export const SUPERVISOR_ENTRY = fileURLToPath(new URL('./supervisor/cli.js', import.meta.url));

export interface SupervisedStart {
  store: Store;
  id: string;
  /** The Node binary to run the supervisor with (cli.ts's process.execPath). */
  execPath: string;
  /** Called once the supervisor runs, so signals reach it. */
  onStart: (child: Subprocess) => void;
}

/** Reads the first line of the supervisor's stdout; undefined when it closes without one. */
function firstLine(child: Subprocess): Promise<string | undefined> {
  return new Promise((resolve) => {
    const stream = child.stdout;
    if (!stream) return resolve(undefined);
    let text = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n');
      if (end >= 0) {
        stream.destroy();
        resolve(text.slice(0, end));
      }
    });
    stream.on('close', () => resolve(undefined));
    stream.on('error', () => resolve(undefined));
  });
}

/** Starts the supervisor and waits for it to report; resolves to the running container's state. */
export async function startSupervised(start: SupervisedStart): Promise<ContainerState> {
  const logFd = openSync(join(start.store.containerDir(start.id), SUPERVISOR_LOG), 'a', 0o600);
  let child: Subprocess;
  try {
    child = startProcess(start.execPath, [SUPERVISOR_ENTRY, start.store.root, start.id], {
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: logFd,
      buffer: false,
      detached: true,
      // Not our working directory: it would keep that directory (and its file system) busy for the container's life.
      cwd: '/',
    });
  } finally {
    closeSync(logFd);
  }
  start.onStart(child);
  const line = await firstLine(child);
  // Not waited for: it lives on after us.
  child.unref();
  let message: Handoff | undefined;
  try {
    message = line === undefined ? undefined : (JSON.parse(line) as Handoff);
  } catch {
    message = undefined;
  }
  if (message && 'started' in message) return message.started;
  if (message && 'error' in message) {
    const code = (message.error.code in ERROR_CODES ? message.error.code : 'ERR_SPAWN_FAILED') as ErrorCode;
    throw new ConveyorError(code, message.error.message, { hint: message.error.hint });
  }
  const result = await child.result;
  throw new ConveyorError('ERR_SPAWN_FAILED', `the container's supervisor ended without starting it (${result.shortMessage || 'no word'})`, {
    hint: `see ${join(start.store.containerDir(start.id), SUPERVISOR_LOG)}`,
  });
}
