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
 * The prestarted supervisor is the container's owner from the first
 * state.json on (`owner`: its pid and start time), not ctr-spawn: a
 * ctr-spawn killed before the order leaves a supervisor that reads end of
 * file and exits (the container is then observed exited), one killed after
 * it leaves a supervisor that starts the container, and in both cases
 * observe() sees a live owner until the supervisor is done, never an
 * `exited` container that a removal could take while the supervisor starts
 * it (the supervisor's claim and start are under the container's lock too).
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
import { startTime } from '@conveyor/lib-common/lock';
import type { ProcessIdentity } from '@conveyor/lib-common/container/state';
import type { Handoff, PublishOrder } from './supervisor/supervise.js';

/** The supervisor's entry, beside this module in dist/. */
export const SUPERVISOR_ENTRY = fileURLToPath(new URL('./supervisor/cli.js', import.meta.url));

/**
 * The points of a detached start where a test can make ctr-spawn stop for
 * good (CONVEYOR_TEST_DETACH_PAUSE), to SIGKILL it there: right after the
 * supervisor is started, before the order is sent (state.json written), and
 * after the order was taken by the pipe.
 */
export const DETACH_POINTS = ['prestarted', 'before-order', 'after-order'] as const;
export type DetachPoint = (typeof DETACH_POINTS)[number];

export interface DetachHooks {
  /** CONVEYOR_TEST_DETACH_PAUSE (tests only): the point where ctr-spawn stops. */
  pauseAt?: string;
  /** Says where it stopped (a warning on stderr), before it stops. */
  say?: (message: string) => void;
}

/** A supervisor started ahead of its container. */
export interface PendingSupervisor {
  /** The supervisor's process: the container's owner from the first state.json on; undefined when it could not be started. */
  owner?: ProcessIdentity;
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

/**
 * Stops this process at `point` when the test hook asks for it: the whole
 * thread waits (Atomics.wait, no timeout), so nothing of ctr-spawn runs on;
 * only a signal that kills it ends the wait.
 */
function pauseForTest(hooks: DetachHooks, point: DetachPoint, detail = ''): void {
  if (hooks.pauseAt !== point) return;
  hooks.say?.(`test hook: paused at ${point}${detail}`);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
}

/** Starts a supervisor with `execPath` (cli.ts's process.execPath); it waits for start() or cancel(). */
export function prestartSupervisor(execPath: string, hooks: DetachHooks = {}): PendingSupervisor {
  const child = startProcess(execPath, [SUPERVISOR_ENTRY], {
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'ignore',
    buffer: false,
    detached: true,
    // Not our working directory: it would keep that directory (and its file system) busy for the container's life.
    cwd: '/',
  });
  // Read now, while it waits for its order: the start time tells it from a later process of the same pid.
  const owner = child.pid ? { pid: child.pid, startTime: startTime(child.pid) } : undefined;
  pauseForTest(hooks, 'prestarted', owner ? ` (supervisor pid ${owner.pid})` : '');
  let ordered = false;
  return {
    owner,
    cancel() {
      if (ordered) return;
      ordered = true;
      child.stdin?.end();
      child.stdout?.destroy();
      child.unref();
    },
    async start(store, id, onStart, publish) {
      ordered = true;
      pauseForTest(hooks, 'before-order', owner ? ` (supervisor pid ${owner.pid})` : '');
      const order = `${JSON.stringify({ store: store.root, id, ...(publish ? { publish } : {}) })}\n`;
      if (hooks.pauseAt === 'after-order') {
        // In the pipe before we stop: the supervisor has it whatever becomes of us.
        const stdin = child.stdin;
        if (stdin) await new Promise<void>((resolve) => stdin.end(order, () => resolve()));
        pauseForTest(hooks, 'after-order', owner ? ` (supervisor pid ${owner.pid})` : '');
      } else child.stdin?.end(order);
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
