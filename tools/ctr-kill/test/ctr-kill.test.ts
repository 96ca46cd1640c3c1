/**
 * ctr-kill on real containers (ctr-spawn -d, runc, the busybox fixture): one
 * signal, by name or from a container record on stdin; SIGKILL by default;
 * a stopped container refused; bad signals and bad input.
 */
import t from 'tap';
import { deleteAllContainers, startDetached, waitForLogLine, waitForState } from '../../../test/helpers/containers.js';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const root = tempStore('conveyor-ctr-kill-');
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
});
const rootfs = busyboxRootfs(root);
const kill = (args: string[], input?: string) => runTool('ctr-kill', ['--root', root, ...args], { input });
const ended = (s: Record<string, any> | undefined) => s?.status === 'exited';

const [hup, sleeper] = await Promise.all([
  startDetached(root, rootfs, ['--name', 'hup'], ['sh', '-c', 'trap "exit 5" HUP; echo ready; while true; do sleep 0.1; done']),
  startDetached(root, rootfs, ['--name', 'sleeper']),
]);

t.test('-s sends that signal, by name', async (t) => {
  t.ok(await waitForLogLine(root, hup.id, 'ready'), 'its trap is set');
  const run = await kill(['-s', 'SIGHUP', 'hup']);
  t.equal(run.code, 0, run.stderr);
  t.match(run.records, [{ type: 'container', id: hup.id, name: 'hup' }], 'the record of the container signalled');
  t.match(await waitForState(root, hup.id, ended), { status: 'exited', exitCode: 5 }, 'the trap ran: HUP, not KILL, arrived');
});

t.test('SIGKILL by default, the container named by a record on stdin', async (t) => {
  const run = await kill([], `${JSON.stringify(sleeper)}\n`);
  t.equal(run.code, 0, run.stderr);
  t.match(await waitForState(root, sleeper.id, ended), { status: 'exited', exitCode: 137, signal: 'SIGKILL' });
});

t.test('a stopped or unknown container fails with exit 1, the rest are still tried', async (t) => {
  const run = await kill(['--log-format=json', 'hup', 'nope']);
  t.equal(run.code, 1);
  t.match(run.logs, [
    { code: 'ERR_CONTAINER_NOT_RUNNING', message: /hup: container [0-9a-f]{12} is not running/ },
    { code: 'ERR_CONTAINER_NOT_FOUND', message: /nope/ },
  ]);
  t.equal(run.stdout, '');
});

t.test('bad signals, flags and input lines exit 2', async (t) => {
  const cases: [string[], string | undefined, RegExp][] = [
    [['-s', 'NOPE', 'hup'], undefined, /invalid signal: "NOPE"/],
    [['-s', '65', 'hup'], undefined, /invalid signal: 65/],
    [['--bogus'], undefined, /unknown flag --bogus/],
    [[], '{"type":"container","id":"x"}\n{"oops"\n', /stdin:1: a container record needs `id`.*\n.*stdin:2: not valid JSON/],
  ];
  const runs = await Promise.all(cases.map(([args, input]) => kill(args, input)));
  for (const [i, [args, input, message]] of cases.entries()) {
    const run = runs[i];
    t.equal(run.code, 2, args.join(' ') || input);
    t.match(run.stderr, message);
  }
});
