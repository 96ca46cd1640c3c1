/**
 * ctr-ls on real containers (ctr-spawn -d with runc from the busybox
 * fixture): what is running, what exited and how, what a crash leaves (never
 * "running"), leftover directories, filters, -q, the table, bad usage.
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deleteAllContainers, startDetached, stateOf, waitForState } from '../../../test/helpers/containers.js';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const root = tempStore('conveyor-ctr-ls-');
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
});
const rootfs = busyboxRootfs(root);
const ls = (args: string[]) => runTool('ctr-ls', ['--root', root, ...args]);

const web = await startDetached(root, rootfs, ['--name', 'web']);
const job = await startDetached(root, rootfs, ['--name', 'job'], ['sh', '-c', 'exit 3']);
await waitForState(root, job.id, (s) => s?.status === 'exited');

t.test('running containers by default, every one with -a', async (t) => {
  const running = await ls([]);
  t.equal(running.code, 0, running.stderr);
  t.strictSame(
    running.records.map((r) => r.name),
    ['web'],
    'only the running one',
  );
  const [record] = running.records;
  t.match(record, {
    type: 'container',
    v: 1,
    id: web.id,
    status: 'running',
    image: 'docker.io/library/busybox:latest',
    store: root,
  });
  t.match(record.imageDigest, /^sha256:[0-9a-f]{64}$/, 'the manifest digest beside the reference');
  t.strictSame(record.command, ['sleep', '60']);
  t.ok(record.pid > 1, 'a running container has its pid');
  t.notOk('runtimeRoot' in record || 'supervisor' in record || 'cgroupsPath' in record, 'internal state fields stay internal');

  const all = await ls(['-a']);
  t.equal(all.code, 0, all.stderr);
  const exited = all.records.find((r) => r.id === job.id);
  t.match(exited, { name: 'job', status: 'exited', exitCode: 3 }, "the supervisor recorded the container's own exit code");
  t.notOk('pid' in exited, 'no pid for an exited container (it may be recycled)');
  t.equal(all.records.length, 2);
});

t.test('-q prints short ids, --no-trunc full ones', async (t) => {
  const quiet = await ls(['-q']);
  t.equal(quiet.stdout, `${web.id.slice(0, 12)}\n`);
  const full = await ls(['-aq', '--no-trunc', '--filter', 'name=job']);
  t.equal(full.code, 0, full.stderr);
  t.equal(full.stdout, `${job.id}\n`);
});

t.test('the table reads like docker ps', async (t) => {
  const table = await ls(['-a', '--table']);
  const lines = table.stdout.trimEnd().split('\n');
  t.match(lines[0], /^CONTAINER ID +IMAGE +COMMAND +CREATED +STATUS +PORTS +NAMES$/);
  const webLine = lines.find((l) => l.endsWith('web'));
  t.match(webLine, new RegExp(`^${web.id.slice(0, 12)} +busybox:latest +"sleep 60" +.* ago +Up .+ +web$`));
  t.match(
    lines.find((l) => l.endsWith('job')),
    /"sh -c exit 3" +.* ago +Exited \(3\) .* ago +job$/,
  );
});

t.test('filters on real containers (the full table is in unit.test.ts)', async (t) => {
  // [filters, names listed (with -a)]
  const cases: [string[], string[]][] = [
    [
      ['name=web', 'name=job'],
      ['job', 'web'],
    ],
    [['image=busybox', 'status=exited'], ['job']],
    [[`id=${web.id.slice(0, 5)}`], ['web']],
  ];
  const runs = await Promise.all(cases.map(([filters]) => ls(['-a', ...filters.flatMap((f) => ['--filter', f])])));
  for (const [i, [filters, names]] of cases.entries()) {
    const run = runs[i];
    t.equal(run.code, 0, run.stderr);
    t.strictSame(run.records.map((r) => r.name).sort(), names, filters.join(' '));
  }
  const implied = await ls(['-f', 'status=exited']);
  t.strictSame(
    implied.records.map((r) => r.name),
    ['job'],
    'a status filter lists stopped containers without -a',
  );
});

t.test('a crashed supervisor and process: exited with the code unknown, never running', async (t) => {
  const crash = await startDetached(root, rootfs, ['--name', 'crash']);
  const state = await waitForState(root, crash.id, (s) => s?.pid !== undefined);
  t.ok(state?.supervisor?.pid, 'a supervisor owns the detached container');
  process.kill(state!.supervisor.pid, 'SIGKILL');
  process.kill(state!.pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(stateOf(root, crash.id)!.status, 'running', 'the file still says running: nobody recorded the end');
  const running = await ls(['--filter', 'name=crash']);
  t.strictSame(running.records, [], 'not listed as running');
  const all = await ls(['-a', '--filter', 'name=crash']);
  t.match(all.records, [{ id: crash.id, status: 'exited', statusDetail: /exit code unknown/ }]);
  t.notOk('exitCode' in all.records[0], 'no exit code made up');
  const table = await ls(['-a', '--table', '--filter', 'name=crash']);
  t.match(table.stdout, /Exited \(unknown\)/);
});

t.test('a directory without state (a ctr-spawn killed early) is dead, with -a only', async (t) => {
  const id = 'd'.repeat(64);
  mkdirSync(join(root, 'containers', id), { recursive: true });
  const all = await ls(['-a', '--filter', 'status=dead']);
  t.match(all.records, [{ type: 'container', id, status: 'dead', store: root }]);
  t.notOk(
    (await ls([])).records.some((r) => r.id === id),
    'not among running ones',
  );
  t.match((await ls(['-a', '--table'])).stdout, new RegExp(`${id.slice(0, 12)} .* Dead`));
});

t.test('a state file that is not JSON: a warning, the container listed as dead, the rest listed', async (t) => {
  const id = 'e'.repeat(64);
  mkdirSync(join(root, 'containers', id), { recursive: true });
  writeFileSync(join(root, 'containers', id, 'state.json'), '{"id": not json');
  const run = await ls(['-a']);
  t.equal(run.code, 0);
  t.match(run.stderr, new RegExp(`warning: container ${id.slice(0, 12)}: .*not JSON`));
  t.match(
    run.records.find((r) => r.id === id),
    { status: 'dead' },
  );
  t.ok(
    run.records.some((r) => r.id === web.id),
    'the others are listed',
  );
});

t.test('bad usage exits 2', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--bogus'], /unknown flag --bogus/],
    [['--filter', 'status=zombie'], /unknown status "zombie"/],
    [['web'], /unexpected argument web/],
  ];
  const runs = await Promise.all(cases.map(([args]) => ls(args)));
  for (const [i, [args, message]] of cases.entries()) {
    const run = runs[i];
    t.equal(run.code, 2, args.join(' '));
    t.match(run.stderr, message);
    t.equal(run.stdout, '');
  }
});

t.test('an empty or missing store lists nothing', async (t) => {
  const run = await runTool('ctr-ls', ['--root', join(t.testdir(), 'none'), '-a']);
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, '');
});
