/**
 * ctr-spawn -d under its supervisor, with real runc containers: what the
 * supervisor records (start, output, exit code, signal), what it cleans and
 * keeps, names unique in the store, and the crashes: a supervisor killed
 * with SIGKILL (observe() reports the container exited) and ctr-spawn killed
 * with SIGKILL mid-start (what is left is removable as ctr-rm removes it), at
 * each point of the start held by the test hooks CONVEYOR_TEST_DETACH_PAUSE
 * (ctr-spawn) and CONVEYOR_TEST_SUPERVISOR_PAUSE (the supervisor), with a
 * removal before and during the supervisor's start.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processAlive } from '@conveyor/lib-common/lock';
import { Store } from '@conveyor/lib-common/store';
import { removeContainerFully } from '@conveyor/lib-common/container/remove';
import { type ContainerEntry, type ContainerState, listContainers, nameHolder, observe, processRuns, readState } from '@conveyor/lib-common/container/state';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';
import { containerDirs, conveyorCgroups, ctrSpawn, mountsUnder } from './helpers.js';

const root = tempStore('conveyor-detach-');
const store = new Store(root);
const rootfs = busyboxRootfs(root, 'latest');
t.teardown(async () => {
  // Whatever a failed test left running goes before the store.
  for (const entry of await listContainers(store)) await removeContainerFully(store, entry).catch(() => undefined);
  removeStore(root);
});

/** Polls the container's state until `done` holds (10 s at most); resolves to the last state seen. */
async function waitState(id: string, done: (state: ContainerState | undefined) => boolean): Promise<ContainerState | undefined> {
  let state: ContainerState | undefined;
  for (let i = 0; i < 200; i++) {
    state = await readState(store, id).catch(() => undefined);
    if (done(state)) return state;
    await sleep(50);
  }
  return state;
}

/** Waits (10 s at most) for the supervisor of `state` to have exited: its clean-up is done then. */
async function supervisorGone(state: ContainerState | undefined): Promise<void> {
  const owner = state?.supervisor;
  for (let i = 0; owner && i < 200 && processAlive(owner.pid, owner.startTime); i++) await sleep(50);
}

function logEntries(id: string): { log: string; stream: string }[] {
  return readFileSync(join(root, 'containers', id, 'ctr.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line));
}

/** No mount, cgroup or runtime state of `id` is left (its directory may stay). */
function assertReleased(t: Tap.Test, id: string) {
  t.strictSame(mountsUnder(join(root, 'containers', id)), [], 'unmounted');
  t.strictSame(conveyorCgroups(id), [], 'no cgroup left');
  t.notOk(existsSync(join('/run/conveyor-runc', id)), 'no runtime state left');
}

t.test('the supervisor records output, exit code and end; the stopped container stays until removed', async (t) => {
  const r = await ctrSpawn(rootfs, ['-d', '--name', 'done', '--', 'sh', '-c', 'echo out; echo err >&2; printf partial; exit 3']);
  t.equal(r.code, 0, r.stderr);
  const record = r.records[0];
  t.match(record, { type: 'container', v: 1, name: 'done', status: 'running', image: rootfs.ref, imageDigest: rootfs.digest, store: root });
  t.match(record.createdAt, /^\d{4}-\d\d-\d\dT/);
  const state = await waitState(record.id, (s) => s?.status === 'exited');
  t.match(state, { status: 'exited', exitCode: 3, name: 'done' }, 'exit code recorded');
  t.notOk(state?.signal, 'no signal');
  t.notOk(state?.pid, 'no pid once exited');
  t.ok(state?.finishedAt && state.startedAt && state.finishedAt >= state.startedAt, 'startedAt and finishedAt');
  // Per stream: which of two pipes written at once is read first is not fixed (as with Docker).
  const entries = logEntries(record.id);
  t.strictSame(
    entries.filter((e) => e.stream === 'stdout').map((e) => e.log),
    ['out\n', 'partial'],
    'stdout lines; the unterminated rest flushed at the end',
  );
  t.strictSame(
    entries.filter((e) => e.stream === 'stderr').map((e) => e.log),
    ['err\n'],
    'stderr lines with their stream',
  );
  // The supervisor cleans after recording: wait for it to finish.
  await supervisorGone(state);
  assertReleased(t, record.id);
  t.ok(existsSync(join(root, 'containers', record.id, 'state.json')), 'state.json stays');
  t.ok(existsSync(join(root, 'containers', record.id, 'upper')), 'the upper dir stays');
  t.equal(await nameHolder(store, 'done'), record.id, 'the name stays with it');

  const again = await ctrSpawn(rootfs, ['-d', '--name', 'done', '--', 'true']);
  t.equal(again.code, 125, 'a taken name is refused');
  t.match(again.stderr, /name done is in use/);
  t.equal(containerDirs(root).length, 1, 'nothing was mounted for the refused run');
  const foreground = await ctrSpawn(rootfs, ['--name', 'done', '--', 'true']);
  t.equal(foreground.code, 125, 'in the foreground too');

  const entry = (await listContainers(store)).find((e) => e.id === record.id)!;
  t.strictSame(await removeContainerFully(store, entry), []);
  t.notOk(existsSync(join(root, 'containers', record.id)), 'removed');
  t.equal(await nameHolder(store, 'done'), undefined, 'removing it frees the name');
  const reuse = await ctrSpawn(rootfs, ['--name', 'done', '--', 'echo', 'reused']);
  t.equal(reuse.stdout, 'reused\n', reuse.stderr);
  t.equal(await nameHolder(store, 'done'), undefined, 'a foreground run gives its name back');
});

t.test('four runs racing for one name: exactly one gets it, the others are refused and leave nothing', async (t) => {
  const before = containerDirs(root).length;
  const runs = await Promise.all([1, 2, 3, 4].map(() => ctrSpawn(rootfs, ['-d', '--rm', '--name', 'race', '--', 'sleep', '2'])));
  const won = runs.filter((r) => r.code === 0);
  t.equal(won.length, 1, `one winner (${runs.map((r) => r.code).join(' ')})`);
  for (const lost of runs.filter((r) => r.code !== 0)) {
    t.equal(lost.code, 125);
    t.match(lost.stderr, /name race (is in use|was taken)/);
  }
  t.equal(await nameHolder(store, 'race'), won[0]?.records[0].id, 'the winner holds the name');
  t.equal(containerDirs(root).length, before + 1, "only the winner's directory exists");
  // Its network namespace (<dir>/netns) is a mount of its own beside the overlay.
  t.strictSame(
    mountsUnder(root).filter((p) => !p.endsWith('/netns')),
    [join(root, 'containers', won[0]?.records[0].id, 'merged')],
    "only the winner's overlay is mounted",
  );
});

t.test('signals: one sent to the supervisor reaches the container; a death by signal is 128+N and its name', async (t) => {
  const trap = await ctrSpawn(rootfs, ['-d', '--', 'sh', '-c', 'trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done']);
  t.equal(trap.code, 0, trap.stderr);
  const killed = await ctrSpawn(rootfs, ['-d', '--', 'sleep', '30']);
  t.equal(killed.code, 0, killed.stderr);
  // dd's 64 MiB buffer over a 16 MiB limit: the OOM killer ends it.
  const hog = await ctrSpawn(rootfs, ['-d', '-m', '16m', '--', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1']);
  t.equal(hog.code, 0, hog.stderr);
  const [a, b] = [trap.records[0], killed.records[0]];
  for (let i = 0; i < 100 && !logEntries(a.id).length; i++) await sleep(50);
  const supervisor = (await readState(store, a.id))!.supervisor!;
  process.kill(supervisor.pid, 'SIGTERM');
  const trapped = await waitState(a.id, (s) => s?.status === 'exited');
  t.match(trapped, { exitCode: 7 }, 'the trap ran and its code was recorded');
  t.strictSame(
    logEntries(a.id).map((e) => e.log),
    ['ready\n', 'got TERM\n'],
  );

  const { execFileSync } = await import('node:child_process');
  execFileSync('runc', ['--root', '/run/conveyor-runc', 'kill', b.id, 'KILL']);
  const ended = await waitState(b.id, (s) => s?.status === 'exited');
  t.match(ended, { exitCode: 137, signal: 'SIGKILL' });
  t.notOk(ended?.oomKilled, 'not an OOM kill');
  const oom = await waitState(hog.records[0].id, (s) => s?.status === 'exited');
  t.match(oom, { exitCode: 137, signal: 'SIGKILL', oomKilled: true }, 'an OOM kill is recorded as one');
  for (const [id, state] of [
    [a.id, trapped],
    [b.id, ended],
    [hog.records[0].id, oom],
  ] as const) {
    await supervisorGone(state);
    assertReleased(t, id);
  }
});

t.test('a supervisor killed with SIGKILL: the state still says running, observe() says exited; removal cleans all', async (t) => {
  const r = await ctrSpawn(rootfs, ['-d', '--name', 'orphan', '--', 'sleep', '30']);
  t.equal(r.code, 0, r.stderr);
  const id = r.records[0].id;
  const state = (await readState(store, id))!;
  process.kill(state.supervisor!.pid, 'SIGKILL');
  for (let i = 0; i < 100 && existsSync(`/proc/${state.supervisor!.pid}`); i++) await sleep(20);
  const onDisk = (await readState(store, id))!;
  t.equal(onDisk.status, 'running', 'nobody recorded an end');
  const seen = observe(onDisk);
  t.equal(seen.status, 'exited', 'observed as exited');
  t.match(seen.statusDetail, /supervisor gone/);
  t.notOk(seen.exitCode, 'with no exit code');
  const entry = (await listContainers(store)).find((e) => e.id === id)!;
  t.equal(entry.state?.status, 'exited', 'listContainers observes it too');
  await removeContainerFully(store, entry);
  t.notOk(existsSync(join(root, 'containers', id)));
  assertReleased(t, id);
  t.equal(await nameHolder(store, 'orphan'), undefined);
});

t.test(
  'ctr-spawn killed with SIGKILL mid-start leaves a container that is either running under its supervisor or observed exited, and removable',
  async (t) => {
    const before = new Set(containerDirs(root));
    const child = spawn(process.execPath, [toolPath('ctr-spawn'), '-d', '--name', 'midstart', '--', 'sleep', '30'], { stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin.end(JSON.stringify(rootfs) + '\n');
    let id: string | undefined;
    for (let i = 0; i < 400 && !id; i++) {
      id = containerDirs(root).find((d) => !before.has(d) && existsSync(join(root, 'containers', d, 'state.json')));
      if (!id) await sleep(5);
    }
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('close', resolve));
    t.ok(id, 'state.json is written before the container starts');
    // Settled: the supervisor has taken it and it runs, or its owner is gone and it is observed exited.
    const settled = await waitState(id!, (s) => s !== undefined && (observe(s).status === 'running' || observe(s).status === 'exited'));
    t.ok(settled && ['running', 'exited'].includes(observe(settled).status), `observed ${settled && observe(settled).status}`);
    const entry = (await listContainers(store)).find((e) => e.id === id)!;
    t.ok(entry, 'listed');
    await removeContainerFully(store, entry);
    t.notOk(existsSync(join(root, 'containers', id!)), 'removed');
    assertReleased(t, id!);
    t.equal(await nameHolder(store, 'midstart'), undefined, 'name released');
  },
);

/** Starts ctr-spawn -d (not waited for) with `env` added, a record on its stdin; its stderr is collected. */
function startDetached(name: string, env: Record<string, string>, flags: string[] = [], command = ['sleep', '30']) {
  const child = spawn(process.execPath, [toolPath('ctr-spawn'), '-d', '--name', name, ...flags, '--', ...command], {
    stdio: ['pipe', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (stderr += chunk));
  const closed = new Promise((resolve) => child.on('close', resolve));
  child.stdin.end(JSON.stringify(rootfs) + '\n');
  return { child, closed, stderr: () => stderr };
}

/** Polls `find` every 20 ms (20 s at most); resolves to its first defined answer. */
async function until<T>(find: () => T | undefined): Promise<T | undefined> {
  for (let i = 0; i < 1000; i++) {
    const found = find();
    if (found !== undefined) return found;
    await sleep(20);
  }
  return undefined;
}

/** Waits (20 s at most) for process `pid` to be gone (a zombie counts as gone). */
async function processGone(pid: number): Promise<boolean> {
  return (await until(() => (processRuns(pid) ? undefined : true))) === true;
}

/** The supervisor held by CONVEYOR_TEST_SUPERVISOR_PAUSE in a container made since `before`: its id and pid (20 s at most). */
async function heldSupervisor(before: Set<string>): Promise<{ id: string; supervisorPid: number } | undefined> {
  return until(() => {
    const dir = containerDirs(root).find((d) => !before.has(d));
    const file = dir && join(root, 'containers', dir, 'test-pause');
    const pid = file && existsSync(file) ? Number.parseInt(readFileSync(file, 'utf8'), 10) : 0;
    return pid > 0 ? { id: dir!, supervisorPid: pid } : undefined;
  });
}

/** Removes `entry` by removeContainerFully ('lib') or by `ctr-rm -f`, whose answer is checked. */
async function removeBy(t: Tap.Test, remover: 'lib' | 'ctr-rm', entry: ContainerEntry, name: string): Promise<void> {
  if (remover === 'lib') {
    await removeContainerFully(store, entry);
    return;
  }
  const r = await runTool('ctr-rm', ['--root', root, '-f', entry.id]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.records, [{ type: 'removed', id: entry.id, name }]);
}

/** Nothing of container `id` is left: no directory, mount, cgroup, runtime state or name. */
async function assertNothingLeft(t: Tap.Test, id: string, name: string) {
  t.notOk(existsSync(join(root, 'containers', id)), 'no container directory');
  assertReleased(t, id);
  t.equal(await nameHolder(store, name), undefined, 'name released');
}

t.test(
  'ctr-spawn -d SIGKILLed at each point of the start (test hook): the prestarted supervisor owns the state from its first write, and a removal leaves nothing',
  async (t) => {
    for (const point of ['prestarted', 'before-order', 'after-order']) {
      await t.test(point, async (t) => {
        const name = `paused-${point}`;
        const before = new Set(containerDirs(root));
        const run = startDetached(name, { CONVEYOR_TEST_DETACH_PAUSE: point });
        const said = await until(() => /paused at (\S+) \(supervisor pid (\d+)\)/.exec(run.stderr()) ?? undefined);
        t.ok(said, `ctr-spawn stopped at ${point}: ${run.stderr()}`);
        if (!said) {
          run.child.kill('SIGKILL');
          return;
        }
        t.equal(said[1], point);
        const supervisorPid = Number(said[2]);
        t.ok(processRuns(supervisorPid), 'the prestarted supervisor waits for its order');
        const id = containerDirs(root).find((d) => !before.has(d));
        if (point === 'prestarted') t.notOk(id, 'no container directory yet');
        else {
          const state = await readState(store, id!);
          t.equal(state?.supervisor?.pid, supervisorPid, 'state.json names the prestarted supervisor as the owner');
          t.equal(state && observe(state).status, 'created', 'observed created: its owner lives');
        }
        run.child.kill('SIGKILL');
        await run.closed;
        if (point === 'after-order') {
          // The order was taken: the supervisor starts the container without ctr-spawn.
          const running = await waitState(id!, (s) => s?.status === 'running');
          t.equal(running && observe(running).status, 'running', 'the supervisor started it');
        } else {
          // No order: the supervisor reads end of file and exits; its container (if any) is then observed exited.
          t.ok(await processGone(supervisorPid), 'the supervisor exits without an order');
          if (id) {
            const left = await readState(store, id);
            t.match(left && observe(left), { status: 'exited', statusDetail: /supervisor gone/ }, 'observed exited once its owner is gone');
          }
        }
        if (id) {
          const entry = (await listContainers(store)).find((e) => e.id === id)!;
          await removeContainerFully(store, entry);
          t.ok(await processGone(supervisorPid), 'the supervisor is gone after the removal');
          await assertNothingLeft(t, id, name);
        }
        t.strictSame(
          containerDirs(root).filter((d) => !before.has(d)),
          [],
          'no container directory made since',
        );
      });
    }
  },
);

t.test('a removal racing the supervisor (test hook): before its claim nothing is started; during its start the removal waits for it', async (t) => {
  for (const [point, remover] of [
    ['before-claim', 'lib'],
    ['before-claim', 'ctr-rm'],
    ['starting', 'lib'],
  ] as const) {
    await t.test(`${point}, removed by ${remover === 'lib' ? 'removeContainerFully' : 'ctr-rm -f'}`, async (t) => {
      const name = `held-${point}-${remover}`;
      const before = new Set(containerDirs(root));
      const run = startDetached(name, { CONVEYOR_TEST_SUPERVISOR_PAUSE: point });
      // The hold's file names the supervisor's pid once written.
      const held = await heldSupervisor(before);
      t.ok(held, `the supervisor holds at ${point}`);
      const { id, supervisorPid } = held!;
      const markerPath = join(root, 'containers', id, 'test-pause');
      // ctr-spawn is gone; the supervisor has its order.
      run.child.kill('SIGKILL');
      await run.closed;
      const state = (await readState(store, id))!;
      t.equal(state.supervisor?.pid, supervisorPid, 'the supervisor owns it');
      t.equal(observe(state).status, 'created', 'observed created, not exited, while it is being started');
      const entry = (await listContainers(store)).find((e) => e.id === id)!;
      if (point === 'before-claim') {
        // The removal takes the directory (and the hold with it): the supervisor finds nothing waiting.
        // Nothing runs yet, nothing to kill: ctr-rm -f removes it at once.
        await removeBy(t, remover, entry, name);
        t.ok(await processGone(supervisorPid), 'the supervisor exits');
        t.notOk(existsSync(join('/run/conveyor-runc', id)), 'the runtime never ran it');
      } else {
        let removed = false;
        const removal = removeContainerFully(store, entry).finally(() => (removed = true));
        // The supervisor holds the container's lock through its start: the removal cannot go ahead.
        await sleep(300);
        t.notOk(removed, 'the removal waits for the start');
        t.ok(existsSync(join(root, 'containers', id, 'state.json')), 'the container is still there');
        rmSync(markerPath);
        await removal;
        t.ok(await processGone(supervisorPid), 'the supervisor exits once its container is removed');
      }
      await assertNothingLeft(t, id, name);
    });
  }
});

t.test(
  'a removal racing a restart (test hook): before the restart takes the lock nothing is started again; during its start the removal waits for it',
  async (t) => {
    for (const [point, remover] of [
      ['restarting', 'lib'],
      ['restarting', 'ctr-rm'],
      ['restart-starting', 'lib'],
    ] as const) {
      await t.test(`${point}, removed by ${remover === 'lib' ? 'removeContainerFully' : 'ctr-rm -f'}`, async (t) => {
        const name = `held-${point}-${remover}`;
        const before = new Set(containerDirs(root));
        // `true` ends at once: the supervisor records the end, waits its backoff and holds at the point.
        const run = startDetached(name, { CONVEYOR_TEST_SUPERVISOR_PAUSE: point }, ['--restart', 'always'], ['true']);
        await run.closed;
        const held = await heldSupervisor(before);
        t.ok(held, `the supervisor holds at ${point} (ctr-spawn said: ${run.stderr().trim()})`);
        const { id, supervisorPid } = held!;
        const state = await readState(store, id);
        const entry = (await listContainers(store)).find((e) => e.id === id)!;
        if (point === 'restarting') {
          t.equal(state?.status, 'exited', 'the first run is recorded as ended');
          t.notOk(state?.restartCount, 'not restarted yet');
          // ctr-rm -f waits (5 s at most) for the supervisor of a stopped container to finish, then removes it anyway.
          await removeBy(t, remover, entry, name);
          // The hold went with the directory: the supervisor takes the lock, finds no state and starts nothing.
          t.ok(await processGone(supervisorPid), 'the supervisor exits');
          t.notOk(existsSync(join('/run/conveyor-runc', id)), 'the runtime did not run it again');
        } else {
          t.match(state, { status: 'running', restartCount: 1, statusDetail: 'restarting' }, 'decided on under the lock');
          let removed = false;
          const removal = removeContainerFully(store, entry).finally(() => (removed = true));
          // The restart holds the container's lock through its start: the removal cannot go ahead.
          await sleep(300);
          t.notOk(removed, 'the removal waits for the restart');
          t.ok(existsSync(join(root, 'containers', id, 'state.json')), 'the container is still there');
          rmSync(join(root, 'containers', id, 'test-pause'));
          await removal;
          t.ok(await processGone(supervisorPid), 'the supervisor exits once its container is removed');
        }
        await assertNothingLeft(t, id, name);
      });
    }
  },
);

t.test('a detached start that fails exits 125/126/127 as in the foreground and leaves nothing', async (t) => {
  const before = containerDirs(root).length;
  const cases: [string[], number, RegExp][] = [
    [['/no/such/command'], 127, /no such file/],
    [['/etc/passwd'], 126, /permission denied/],
  ];
  for (const [command, code, message] of cases) {
    const r = await ctrSpawn(rootfs, ['-d', '--name', 'failing', '--', ...command]);
    t.equal(r.code, code, command.join(' '));
    t.match(r.stderr, message);
    t.equal(r.stdout, '', 'no record');
  }
  t.equal(containerDirs(root).length, before, 'no container dir left');
  t.equal(await nameHolder(store, 'failing'), undefined, 'the name is free again');
  const usage = await ctrSpawn(rootfs, ['-d', '--log-opt', 'colour=red', '--', 'true']);
  t.equal(usage.code, 125, 'an unknown --log-opt is refused');
  const badName = await ctrSpawn(rootfs, ['-d', '--name', '../x', '--', 'true']);
  t.equal(badName.code, 125, 'a name that is not a name is refused');
  t.match(badName.stderr, /invalid container name/);
});
