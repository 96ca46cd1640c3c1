/**
 * Detach (-d): hands the prepared container (bundle and state.json written,
 * status `created`) to a supervisor (supervisor/supervise.ts), a process
 * `node supervisor/cli.js` in its own session so that it outlives ctr-spawn,
 * a closed pipe and a terminal hang-up. It is started early (prestart), as
 * soon as ctr-spawn knows it will detach, so that its start-up overlaps the
 * mount and the bundle; it waits for its order on stdin: one JSON line
 * naming the store and the container, and the ports to publish if any (or
 * end of file: cancelled). Its
 * stdout is a pipe to us that carries one JSON line back, the hand-off: the
 * state of the running container, or the error that kept it from starting
 * (the supervisor has cleaned up by then). Its messages go to
 * supervisor.log in the container directory.
 *
 * Failure: the supervisor's error as a ConveyorError (125/126/127 in
 * cli.ts); ERR_SPAWN_FAILED when it ends without a word (the caller cleans
 * up then). Signals that reach us after the order go to the supervisor,
 * which passes them to the container.
 */
import { fileURLToPath } from 'node:url';
import { ConveyorError, ERROR_CODES, type ErrorCode } from '@conveyor/lib-common/errors';
import type { Store } from '@conveyor/lib-common/store';
import type { ContainerState } from '@conveyor/lib-common/container/state';
import { startProcess, type Subprocess } from '@conveyor/lib-common/subprocess';
import type { Handoff, PublishOrder } from './supervisor/supervise.js';

/** The supervisor's entry, beside this module in dist/. */
export const SUPERVISOR_ENTRY = fileURLToPath(new URL('./supervisor/cli.js', import.meta.url));

/** A supervisor started ahead of its container. */
export interface PendingSupervisor {
  /**
   * Gives it the container (and the ports it is to publish: it binds them
   * before the start and owns the relay) and waits for its word; resolves to
   * the running container's state.
   */
  start(store: Store, id: string, onStart: (child: Subprocess) => void, publish?: PublishOrder): Promise<ContainerState>;
  /** Sends it away without a container (it exits); a no-op after start. */
  cancel(): void;
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

/** Starts a supervisor with `execPath` (cli.ts's process.execPath); it waits for start() or cancel(). */
export function prestartSupervisor(execPath: string): PendingSupervisor {
  const child = startProcess(execPath, [SUPERVISOR_ENTRY], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'ignore',
    buffer: false,
    detached: true,
    // Not our working directory: it would keep that directory (and its file system) busy for the container's life.
    cwd: '/',
  });
  let ordered = false;
  return {
    cancel() {
      if (ordered) return;
      ordered = true;
      child.stdin?.end();
      child.stdout?.destroy();
      child.unref();
    },
    async start(store, id, onStart, publish) {
      ordered = true;
      child.stdin?.end(`${JSON.stringify({ store: store.root, id, ...(publish ? { publish } : {}) })}\n`);
      onStart(child);
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
        hint: 'it has been cleaned up; run it in the foreground (without -d) to see it fail',
      });
    },
  };
}
