/** ctr-spawn's state.json helpers and --log-opt parsing, table-driven (pure functions). */
import t from 'tap';
import { Store } from '@conveyor/lib-common/store';
import { PID_FILE } from '../src/cleanup.js';
import { parseLogOpts } from '../src/options.js';
import { containerRecord, endOf, exitedState, initialState } from '../src/state.js';

const ID = 'a'.repeat(64);
const paths = { id: ID, containerDir: `/s/containers/${ID}`, upper: 'u', work: 'w', merged: `/s/containers/${ID}/merged` };

t.test('how a container ended, from the exit code', async (t) => {
  const cases: [number, boolean, object][] = [
    [0, false, { exitCode: 0 }],
    [3, false, { exitCode: 3 }],
    [128, false, { exitCode: 128 }],
    [137, false, { exitCode: 137, signal: 'SIGKILL' }],
    [137, true, { exitCode: 137, signal: 'SIGKILL', oomKilled: true }],
    [143, false, { exitCode: 143, signal: 'SIGTERM' }],
    [130, false, { exitCode: 130, signal: 'SIGINT' }],
    [255, false, { exitCode: 255 }],
  ];
  for (const [code, oom, expected] of cases) t.strictSame(endOf(code, oom), expected, `${code}${oom ? ' oom' : ''}`);
});

t.test('initial, exited state and the container record', async (t) => {
  const now = new Date('2026-11-29T21:00:00Z');
  const state = initialState({
    record: { type: 'rootfs', ref: 'docker.io/library/busybox:latest', digest: 'sha256:' + 'b'.repeat(64), config: { StopSignal: 'SIGQUIT' } },
    spec: { process: { args: ['sleep', '1'] } },
    runtime: { runtime: 'runc', runtimeRoot: '/run/x' },
    store: new Store('/s'),
    paths,
    cgroupsPath: `/conveyor/${ID}`,
    ephemeral: true,
    name: 'web',
    keep: false,
    autoRemove: true,
    owner: { pid: 42, startTime: '7' },
    log: { path: `${paths.containerDir}/ctr.log`, limits: { maxSize: 1024, maxFiles: 2 } },
    now,
  });
  t.match(state, {
    type: 'container',
    id: ID,
    name: 'web',
    status: 'created',
    image: 'sha256:' + 'b'.repeat(64),
    createdAt: '2026-11-29T21:00:00.000Z',
    supervisor: { pid: 42, startTime: '7' },
    stopSignal: 'SIGQUIT',
    autoRemove: true,
    command: ['sleep', '1'],
    logMaxSize: 1024,
    logMaxFiles: 2,
    ephemeralMount: true,
    rootfs: paths.merged,
  });
  t.notOk('keep' in state, 'keep only when asked');
  const running = { ...state, status: 'running' as const, pid: 99, pidStartTime: '8', statusDetail: 'x' };
  const exited = exitedState(running, endOf(137), new Date('2026-11-29T21:01:00Z'));
  t.match(exited, { status: 'exited', exitCode: 137, signal: 'SIGKILL', finishedAt: '2026-11-29T21:01:00.000Z' });
  t.notOk('pid' in exited || 'pidStartTime' in exited || 'statusDetail' in exited, 'no pid of a process that is gone');
  const record = containerRecord(running);
  t.strictSame(Object.keys(record).sort(), ['bundle', 'createdAt', 'id', 'image', 'name', 'pid', 'ref', 'status', 'store', 'type', 'v'], 'record fields only');
  t.equal(PID_FILE, 'container.pid', "the supervisor's own copy of the pid file name agrees");
});

t.test('--log-opt', async (t) => {
  const cases: [string[], object | string][] = [
    [[], { maxSize: 10 * 1024 * 1024, maxFiles: 3 }],
    [['max-size=1m'], { maxSize: 1024 * 1024, maxFiles: 3 }],
    [['max-size=2k', 'max-file=1'], { maxSize: 2048, maxFiles: 1 }],
    [['max-file=100'], { maxSize: 10 * 1024 * 1024, maxFiles: 100 }],
    [['max-size=10'], 'at least 1k'],
    [['max-size=lots'], 'not a size'],
    [['max-file=0'], 'whole number'],
    [['max-file=1.5'], 'whole number'],
    [['compress=true'], 'unknown --log-opt'],
    [['max-size'], 'not a size'],
  ];
  for (const [entries, expected] of cases) {
    if (typeof expected === 'string') t.throws(() => parseLogOpts(entries), { code: 'ERR_USAGE', message: new RegExp(expected) }, entries.join(' '));
    else t.strictSame(parseLogOpts(entries), expected, entries.join(' ') || 'defaults');
  }
});
