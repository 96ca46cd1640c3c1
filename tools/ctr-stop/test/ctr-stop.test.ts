/**
 * ctr-stop on real containers (ctr-spawn -d, runc, the busybox fixture): the
 * stop signal (SIGTERM, the image's StopSignal, -s), SIGKILL after -t, the
 * exit recorded; ids, prefixes, names and container records on stdin, the
 * ctr-ls | jq | ctr-stop pipeline verbatim; unknown, ambiguous and forged
 * input.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deleteAllContainers, startDetached, stateOf, waitForLogLine } from '../../../test/helpers/containers.js';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';

const root = tempStore('conveyor-ctr-stop-');
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
});
const rootfs = busyboxRootfs(root);
const stop = (args: string[], input?: string) => runTool('ctr-stop', ['--root', root, ...args], { input });
/** A container that ends with `code` on SIGTERM (a shell as pid 1 ignores signals it does not trap). */
const trapping = (signal: string, code: number) => ['sh', '-c', `trap "exit ${code}" ${signal}; echo ready; while true; do sleep 0.1; done`];

const sleeper = await startDetached(root, rootfs, ['--name', 'sleeper']);

t.test('SIGTERM ignored (sleep as pid 1): SIGKILL after -t, exit 137 recorded', async (t) => {
  const c = sleeper;
  const run = await stop(['-t', '1', 'sleeper']);
  t.equal(run.code, 0, run.stderr);
  t.match(run.records, [{ type: 'container', id: c.id, name: 'sleeper', status: 'exited', exitCode: 137, signal: 'SIGKILL' }]);
  t.match(stateOf(root, c.id), { status: 'exited', exitCode: 137 }, 'state.json says so too');
  const again = await stop(['sleeper']);
  t.equal(again.code, 0, 'stopping a stopped container succeeds, as docker stop');
  t.match(again.records, [{ id: c.id, status: 'exited', exitCode: 137 }], 'and changes nothing');
});

t.test("the image's StopSignal, and -s overriding it", async (t) => {
  const usr1 = { ...rootfs, config: { ...rootfs.config, StopSignal: 'SIGUSR1' } };
  const command = ['sh', '-c', 'trap "exit 7" USR1; trap "exit 8" HUP; echo ready; while true; do sleep 0.1; done'];
  const [c, d] = await Promise.all([startDetached(root, usr1, [], command), startDetached(root, usr1, [], command)]);
  t.ok((await Promise.all([c, d].map((x) => waitForLogLine(root, x.id, 'ready')))).every(Boolean), 'their traps are set');
  t.equal(stateOf(root, c.id)!.stopSignal, 'SIGUSR1');
  const run = await stop([c.id.slice(0, 10)]);
  t.match(run.records, [{ id: c.id, status: 'exited', exitCode: 7 }], 'USR1 from the image, trapped (the container named by a unique id prefix)');
  const hup = await stop(['-s', 'HUP', d.id]);
  t.match(hup.records, [{ status: 'exited', exitCode: 8 }], '-s HUP instead');
});

t.test('the pipeline verbatim: ctr-ls | jq -c \'select(.image|test("busybox"))\' | ctr-stop', async (t) => {
  const bin = mkdtempSync(join(t.testdir(), 'bin-'));
  for (const tool of ['ctr-ls', 'ctr-stop']) symlinkSync(toolPath(tool), join(bin, tool));
  const [a, b] = await Promise.all([
    startDetached(root, rootfs, ['--name', 'pipe-a'], trapping('TERM', 0)),
    startDetached(root, rootfs, ['--name', 'pipe-b'], trapping('TERM', 0)),
  ]);
  t.ok((await Promise.all([a, b].map((x) => waitForLogLine(root, x.id, 'ready')))).every(Boolean), 'their traps are set');
  const out = execFileSync('bash', ['-o', 'pipefail', '-c', `ctr-ls | jq -c 'select(.image|test("busybox"))' | ctr-stop`], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, CONVEYOR_ROOT: root },
    encoding: 'utf8',
  });
  const records = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.strictSame(records.map((r) => r.id).sort(), [a.id, b.id].sort(), 'both busybox containers stopped and printed');
  t.ok(
    records.every((r) => r.status === 'exited' && r.exitCode === 0),
    'each record as it is after the stop',
  );
});

t.test('unknown and ambiguous names fail with exit 1; the others are still stopped', async (t) => {
  // Two stopped containers whose ids share a prefix: state files as ctr-spawn writes them.
  for (const id of [`abc1${'0'.repeat(60)}`, `abc2${'0'.repeat(60)}`]) {
    mkdirSync(join(root, 'containers', id), { recursive: true });
    const state = {
      type: 'container',
      v: 1,
      id,
      status: 'exited',
      exitCode: 0,
      store: root,
      runtime: 'runc',
      runtimeRoot: '/run/conveyor-runc',
      cgroupsPath: `/conveyor/${id}`,
      ephemeralMount: false,
      rootfs: '',
    };
    writeFileSync(join(root, 'containers', id, 'state.json'), JSON.stringify(state));
  }
  const run = await stop(['--log-format=json', 'nope', 'abc', 'sleeper']);
  t.equal(run.code, 1);
  t.match(run.logs, [
    { level: 'error', code: 'ERR_CONTAINER_NOT_FOUND', message: /no such container: nope/ },
    { level: 'error', code: 'ERR_CONTAINER_AMBIGUOUS', message: /abc matches 2 containers/ },
  ]);
  t.match(run.records, [{ name: 'sleeper', status: 'exited' }], 'the container after them was still acted on');
});

t.test('stdin: records of other types pass through, bad records are exit 2 naming the line', async (t) => {
  const c = stateOf(root, sleeper.id)!;
  const other = { type: 'image', v: 1, ref: 'docker.io/library/busybox:latest' };
  const forged = { type: 'container', v: 1, id: '../../../etc', bundle: '/etc' };
  const input = [
    JSON.stringify(other),
    JSON.stringify(forged),
    JSON.stringify({ type: 'container', v: 1, id: c.id, bundle: '/elsewhere', store: root }),
    '{"type":',
  ].join('\n');
  const run = await stop([], input + '\n');
  t.equal(run.code, 2, 'a malformed record is bad input');
  t.match(run.stderr, /stdin:2: a container record needs `id`/);
  t.match(run.stderr, /stdin:4: not valid JSON/);
  t.strictSame(run.records[0], other, 'passed through unchanged, in its place');
  t.match(
    run.records[1],
    { id: c.id, status: 'exited', bundle: join(root, 'containers', c.id) },
    'the id is looked up in the store: the bundle of the record is not used',
  );
  const elsewhere = await stop([], `${JSON.stringify({ type: 'container', v: 1, id: 'f'.repeat(64), store: '/var/lib/other' })}\n`);
  t.equal(elsewhere.code, 1);
  t.match(elsewhere.stderr, /no such container: f{64} \(the record is from the store \/var\/lib\/other; pass --root/);
});

t.test('bad flags exit 2', async (t) => {
  const cases = [
    [['--bogus', 'x'], /unknown flag --bogus/],
    [['-t', 'soon', 'x'], /--time must be a whole number/],
    [['-s', 'SIGNOPE', 'x'], /invalid signal/],
  ] as const;
  const runs = await Promise.all(cases.map(([args]) => stop([...args])));
  for (const [i, [args, message]] of cases.entries()) {
    const run = runs[i];
    t.equal(run.code, 2, args.join(' '));
    t.match(run.stderr, message);
  }
});
