/**
 * The supervisor's entry: `node supervisor/cli.js`, started by ctr-spawn -d
 * in its own session as soon as it knows it will detach, so that Node's
 * start-up and the loading of supervise.ts overlap ctr-spawn's mount and
 * bundle work. stdin is the order from ctr-spawn, one JSON line
 * `{"store": ROOT, "id": ID, "publish"?: {netnsPath, mappings}}` once the
 * container is prepared (end of file
 * without one: ctr-spawn gave up, and so do we). stdout is the hand-off to
 * ctr-spawn: one JSON line, then closed. Messages go to supervisor.log in
 * the container directory. Not a tool of its own: ctr-spawn's code, run as
 * a process that outlives ctr-spawn.
 *
 * Tests only: CONVEYOR_TEST_SUPERVISOR_PAUSE=before-claim|starting|restarting|restart-starting
 * holds the start (or a restart) at that point (supervise.ts SuperviseIO.pause) while the file
 * `test-pause` exists in the container directory: made at the point, and
 * removed by the test (or with the container) to let it go on.
 */
import { appendFileSync, closeSync, existsSync, writeFileSync, writeSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const loading = Promise.all([import('@conveyor/lib-common/lock'), import('./supervise.js')]);
// Loading failures surface where they are awaited, with a message in the log.
loading.catch(() => undefined);

/** The first line of stdin, or undefined at end of file. */
function order(): Promise<string | undefined> {
  return new Promise((resolve) => {
    let text = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\n');
      if (end >= 0) {
        process.stdin.destroy();
        resolve(text.slice(0, end));
      }
    });
    process.stdin.on('end', () => resolve(undefined));
    process.stdin.on('error', () => resolve(undefined));
  });
}

/** The test hook's pause (see the header), or none. */
function testPause(pauseAt: string | undefined, marker: string): ((point: string) => Promise<void>) | undefined {
  if (!pauseAt) return undefined;
  return async (point) => {
    if (point !== pauseAt) return;
    try {
      writeFileSync(marker, `${process.pid}\n`, { mode: 0o600 });
    } catch {
      return; // the container directory is gone: nothing to hold
    }
    while (existsSync(marker)) await sleep(20);
  };
}

let handedOff = false;
const handoff = (message: unknown) => {
  if (handedOff) return;
  handedOff = true;
  try {
    writeSync(1, `${JSON.stringify(message)}\n`);
  } catch {
    // ctr-spawn is gone (killed mid-start): the container runs on all the same.
  }
  closeSync(1);
};

const line = await order();
let parsed: { store?: unknown; id?: unknown; publish?: unknown } = {};
try {
  parsed = line === undefined ? {} : JSON.parse(line);
} catch {
  // not an order: nothing to do
}
const { store, id, publish } = parsed;
if (typeof store === 'string' && typeof id === 'string' && /^[0-9a-f]{64}$/.test(id)) {
  const logPath = `${store}/containers/${id}/supervisor.log`;
  const warn = (message: string) => {
    try {
      appendFileSync(logPath, `${new Date().toISOString()} ctr-spawn supervisor ${id.slice(0, 12)}: ${message}\n`, { mode: 0o600 });
    } catch {
      // the container directory is gone (removed): nowhere to say it
    }
  };
  try {
    const [{ startTime }, { supervise }] = await loading;
    process.exitCode = await supervise(store, id, {
      handoff,
      self: { pid: process.pid, startTime: startTime('self') },
      signals: (handler) => {
        for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const) process.on(signal, handler);
      },
      warn,
      // Checked by supervise (publishOrder): the order comes from ctr-spawn, but a malformed one must not bind anything.
      publish,
      execPath: process.execPath,
      pause: testPause(process.env.CONVEYOR_TEST_SUPERVISOR_PAUSE, `${store}/containers/${id}/test-pause`),
    });
  } catch (error) {
    warn((error as Error).stack ?? String(error));
    handoff({ error: { code: 'ERR_INTERNAL', message: `supervisor failed: ${(error as Error).message}` } });
    process.exitCode = 1;
  }
} else if (line !== undefined) {
  handoff({ error: { code: 'ERR_INTERNAL', message: 'supervisor: malformed order from ctr-spawn' } });
  process.exitCode = 1;
}
