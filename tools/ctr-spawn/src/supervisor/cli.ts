/**
 * The supervisor's entry: `node supervisor/cli.js STORE_ROOT ID`, started by
 * ctr-spawn -d in its own session with stdout a pipe to ctr-spawn (the
 * hand-off: one JSON line, then closed) and stderr the container directory's
 * supervisor.log. Not a tool of its own: ctr-spawn's code, run as a process
 * that outlives ctr-spawn. The work is supervise.ts, loaded lazily.
 */
import { closeSync, writeSync } from 'node:fs';

const [storeRoot, id] = process.argv.slice(2);
const warn = (message: string) => process.stderr.write(`ctr-spawn supervisor ${String(id).slice(0, 12)}: ${message}\n`);
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

try {
  const { startTime } = await import('@conveyor/lib-common/lock');
  const { supervise } = await import('./supervise.js');
  process.exitCode = await supervise(storeRoot, id, {
    handoff,
    self: { pid: process.pid, startTime: startTime('self') },
    signals: (handler) => {
      for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const) process.on(signal, handler);
    },
    warn,
  });
} catch (error) {
  warn((error as Error).stack ?? String(error));
  handoff({ error: { code: 'ERR_INTERNAL', message: `supervisor failed: ${(error as Error).message}` } });
  process.exitCode = 1;
}
