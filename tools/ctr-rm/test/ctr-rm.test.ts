/**
 * ctr-rm on real containers (ctr-spawn, runc, the busybox fixture): a
 * running container refused without -f and the others still removed; -f;
 * the leftovers of a SIGKILLed ctr-spawn; directories without state and
 * --prune; and after each removal, nothing left behind (mounts, cgroups,
 * runc state, the directory, the name).
 */
import t from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { deleteAllContainers, leftoversOf, RUNTIME_ROOT, startDetached, stateOf, waitForState } from '../../../test/helpers/containers.js';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { jsonLines, runTool, toolPath } from '../../../test/helpers/tools.js';

const root = tempStore('conveyor-ctr-rm-');
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
});
const rootfs = busyboxRootfs(root);
const rm = (args: string[], input?: string) => runTool('ctr-rm', ['--root', root, ...args], { input });

const [running, done] = await Promise.all([startDetached(root, rootfs, ['--name', 'running']), startDetached(root, rootfs, ['--name', 'done'], ['true'])]);
await waitForState(root, done.id, (s) => s?.status === 'exited');

t.test('a running container is refused without -f; the others are still removed', async (t) => {
  const bin = mkdtempSync(join(t.testdir(), 'bin-'));
  for (const tool of ['ctr-ls', 'ctr-rm']) symlinkSync(toolPath(tool), join(bin, tool));
  // Bare ids from ctr-ls -q, the running one among them.
  let stderr = '';
  let code = 0;
  let stdout = '';
  try {
    stdout = execFileSync('bash', ['-o', 'pipefail', '-c', 'ctr-ls -aq | ctr-rm'], {
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, CONVEYOR_ROOT: root },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    ({ stdout, stderr } = error as { stdout: string; stderr: string });
    code = (error as { status: number }).status;
  }
  t.equal(code, 1, 'exit 1: one container was refused');
  t.match(stderr, new RegExp(`ctr-rm: container ${running.id.slice(0, 12)} is running \\(stop it first \\(ctr-stop running\\) or remove it with -f\\)`));
  const [removed, ...others] = jsonLines(stdout).filter((r) => r.type !== 'error');
  t.strictSame(removed, { type: 'removed', v: 1, id: done.id, name: 'done', store: root }, 'the stopped one removed');
  t.strictSame(others, [], 'nothing else removed');
  t.match(
    jsonLines(stdout).filter((r) => r.type === 'error'),
    [{ code: 'ERR_CONTAINER_RUNNING', tool: 'ctr-rm', exitCode: 1 }],
    'the refusal travels on as an error record',
  );
  t.strictSame(leftoversOf(root, done.id), [], 'nothing of it left');
  t.equal(stateOf(root, running.id)?.status, 'running', 'the running one untouched');
});

t.test('-f kills and removes; nothing left behind', async (t) => {
  t.not(leftoversOf(root, running.id).length, 0, 'a running container has a mount, cgroups, runc state, a directory, a name');
  const run = await rm(['-f', 'running']);
  t.equal(run.code, 0, run.stderr);
  t.match(run.records, [{ type: 'removed', id: running.id, name: 'running' }]);
  t.strictSame(leftoversOf(root, running.id), []);
  const again = await rm(['running']);
  t.equal(again.code, 1, 'gone: removing it again is an unknown container');
  t.match(again.stderr, /no such container: running/);
});

t.test("forceRemoveOutside (a user's -f): kills every target, then hands the killed ids inside; an unknown one fails alone", async (t) => {
  const { forceRemoveOutside } = await import('../src/remove.js');
  const { Store } = await import('@conveyor/lib-common/store');
  const { Logger } = await import('@conveyor/lib-common/log');
  const victim = await startDetached(root, rootfs, ['--name', 'victim']);
  const store = new Store(root);
  const printed: object[] = [];
  const out = { write: async (record: object) => void printed.push(record) };
  const logged = new PassThrough();
  const log = new Logger('ctr-rm', logged);
  const handed: string[][] = [];
  const code = await forceRemoveOutside({ store, args: ['victim', 'no-such-container'], out, log }, async (ids) => {
    handed.push(ids);
    await waitForState(root, victim.id, (s) => s?.status === 'exited');
    return 0;
  });
  t.equal(code, 1, 'the unknown container is the answer');
  t.strictSame(handed, [[victim.id]], 'the killed container, and only it, goes inside');
  t.strictSame(printed, [], 'nothing printed outside: the removal inside prints');
  t.match(String(logged.read()), /no such container: no-such-container/);
  const removed = await rm(['victim']);
  t.equal(removed.code, 0, removed.stderr);
  const nothing = await forceRemoveOutside({ store, args: ['no-such-container'], out, log }, async () => {
    t.fail('nothing was killed: nothing to hand inside');
    return 0;
  });
  t.equal(nothing, 1);
});

t.test('the leftovers of a SIGKILLed ctr-spawn are removed without -f', async (t) => {
  const child = spawn(process.execPath, [toolPath('ctr-spawn'), '--root', root, '--name', 'orphan', '--', 'sleep', '60'], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  child.stdin.end(JSON.stringify(rootfs) + '\n');
  let id: string | undefined;
  for (let i = 0; i < 200 && !id; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const names = join(root, 'names', 'orphan');
    try {
      id = execFileSync('cat', [names], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      // not yet
    }
    // Running once the runtime has its state (a foreground run records no pid).
    if (id && !existsSync(join(RUNTIME_ROOT, id))) id = undefined;
  }
  t.ok(id, 'the foreground container runs');
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  const ls = await runTool('ctr-ls', ['--root', root, '-a', '--filter', 'name=orphan']);
  t.match(ls.records, [{ id, status: 'exited', statusDetail: /exit code unknown/ }], 'ctr-ls: its owner is gone, so it is not running');
  const run = await rm(['orphan']);
  t.equal(run.code, 0, run.stderr);
  t.strictSame(leftoversOf(root, id!), [], 'its process killed, runc state, cgroups, overlay, directory and name gone');
});

t.test('directories without state: --prune takes those older than a minute, ctr-rm ID any', async (t) => {
  const old = '0'.repeat(64);
  const young = '1'.repeat(64);
  for (const id of [old, young]) mkdirSync(join(root, 'containers', id, 'upper'), { recursive: true });
  const hour = Date.now() / 1000 - 3600;
  utimesSync(join(root, 'containers', old), hour, hour);
  // ctr-spawn claims a name before it writes the state: a leftover may hold one.
  mkdirSync(join(root, 'names'), { recursive: true });
  writeFileSync(join(root, 'names', 'ghost'), `${old}\n`);
  const keep = await startDetached(root, rootfs, ['--name', 'keep']);
  const prune = await rm(['--prune']);
  t.equal(prune.code, 0, prune.stderr);
  t.strictSame(
    prune.records.map((r) => r.id),
    [old],
    'only the old leftover (running and fresh ones stay)',
  );
  t.strictSame(leftoversOf(root, old), [], 'its directory and the name it held are gone');
  t.equal(stateOf(root, keep.id)?.status, 'running');
  const explicit = await rm([young.slice(0, 12)]);
  t.equal(explicit.code, 0, explicit.stderr);
  t.strictSame(leftoversOf(root, young), []);
});

t.test('bad usage and bad input exit 2', async (t) => {
  const cases: [string[], string | undefined, RegExp][] = [
    [['--bogus'], undefined, /unknown flag --bogus/],
    [['--prune', 'keep'], undefined, /--prune takes no containers/],
    [[], '{"type":"container","id":"../../.."}\n', /stdin:1: a container record needs `id`/],
    [[], '{nope\n', /stdin:1: not valid JSON/],
  ];
  const runs = await Promise.all(cases.map(([args, input]) => rm(args, input)));
  for (const [i, [args, input, message]] of cases.entries()) {
    const run = runs[i];
    t.equal(run.code, 2, args.join(' ') || input);
    t.match(run.stderr, message);
  }
});
