/**
 * runCli's `userNamespace` (rootless/enter, rootless/keeper), run as the unprivileged test users
 * (test/helpers/rootless.ts) with a probe tool (fixtures/userns-probe.mjs): the tool runs again
 * as uid 0 of a user namespace with podman's mapping (range for conveyor-rl-sub, single for
 * conveyor-rl-nosub), with our stdin, cwd, exit code and signals; the store defaults to
 * $XDG_DATA_HOME/conveyor (0700, made with parents) and is passed in, and trusted inside (where
 * real root's parents read as the overflow uid); one keeper is reused, a dead
 * or forged one replaced; an unsafe store is refused before any namespace; root never enters.
 */
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { NOSUB_USER, SUB_RANGE, SUB_USER, type RootlessUser, ownedByRoot, rootlessUser, runAs, userCheckout, userStore } from '../../test/helpers/rootless.js';
import { jsonLines } from '../../test/helpers/tools.js';

const sub = rootlessUser(SUB_USER);
const nosub = rootlessUser(NOSUB_USER);
const PROBE = 'lib-common/test/fixtures/userns-probe.mjs';

async function probe(user: RootlessUser, store: string, args: string[] = [], options: Parameters<typeof runAs>[3] = {}) {
  const run = await runAs(user, process.execPath, [join(userCheckout(), PROBE), ...args], {
    ...options,
    env: { XDG_DATA_HOME: join(store, '..', 'xdg'), ...options.env },
  });
  return { ...run, records: jsonLines(run.stdout) };
}

const keeperOf = (root: string) => JSON.parse(readFileSync(join(root, 'run', 'userns.json'), 'utf8'));

for (const [user, kind] of [
  [sub, 'range'],
  [nosub, 'single'],
] as const) {
  t.test(`${user.name}: the tool runs as root of a ${kind}-mapped namespace, the XDG store made closed`, async (t) => {
    const store = userStore(user, t);
    const xdgStore = join(store, '..', 'xdg', 'conveyor');
    const run = await probe(user, store, [], { input: 'stdin passes\n', cwd: '/tmp' });
    t.equal(run.code, 0, run.stderr);
    const [record] = run.records;
    const own = `0 ${user.uid} 1`;
    const range = `1 ${SUB_RANGE.start} ${SUB_RANGE.count}`;
    t.match(record, {
      euid: 0,
      root: xdgStore,
      cwd: '/tmp',
      home: user.home,
      stdin: 'stdin passes\n',
    });
    t.strictSame(record.uidMap, kind === 'range' ? [own, range] : [own]);
    t.strictSame(record.gidMap, kind === 'range' ? [`0 ${user.gid} 1`, range] : [`0 ${user.gid} 1`]);
    const keeper = keeperOf(xdgStore);
    t.equal(record.userns, String(keeper.pid));
    t.match(keeper, { uid: user.uid, mapping: kind });
    t.equal(readFileSync(`/proc/${keeper.pid}/comm`, 'utf8'), 'sleep\n');
    t.equal(statSync(join(xdgStore, 'run', 'userns.json')).mode & 0o777, 0o600);
    for (const dir of [join(store, '..', 'xdg'), xdgStore]) t.equal(statSync(dir).mode & 0o777, 0o700, `${dir} is 0700`);
    t.strictSame(ownedByRoot(join(store, '..')), [], 'nothing owned by root');

    const again = await probe(user, store, ['--exit', '3']);
    t.equal(again.code, 3, 'the exit code passes');
    t.equal(again.records[0].userns, String(keeper.pid), 'the keeper is reused');

    // Inside, real root's /home and / read as the overflow uid: still a trusted store.
    const trusted = await probe(user, store, ['--trust']);
    t.equal(trusted.code, 0, trusted.stderr);
    // Only on the way to that store: another store of the user's (under /tmp, which is fine outside),
    // never checked outside, is refused there.
    const otherDir = mkdtempSync('/tmp/conveyor-rl-other-');
    t.teardown(() => rmSync(otherDir, { recursive: true, force: true }));
    chownSync(otherDir, user.uid, user.gid);
    const other = await probe(user, store, ['--trust-path', join(otherDir, 'store'), '--log-format=json']);
    t.equal(other.code, 1, 'another store is not trusted inside');
    t.match(JSON.parse(other.stderr), { code: 'ERR_STORE_UNSAFE', message: /\/tmp is owned by uid 65534/ });

    const outside = await probe(user, store, ['--outside']);
    t.equal(outside.code, 0, outside.stderr);
    t.match(outside.records[0], { euid: user.uid, userns: null });
  });
}

t.test('--root and a relative path: resolved outside, passed in', async (t) => {
  const store = userStore(sub, t);
  const run = await probe(sub, store, ['--root', 'store'], { cwd: join(store, '..') });
  t.equal(run.code, 0, run.stderr);
  t.equal(run.records[0].root, store);
  t.ok(existsSync(join(store, 'run', 'userns.json')));
});

t.test('a dead keeper, or a record naming another process, is replaced', async (t) => {
  const store = userStore(sub, t);
  const first = await probe(sub, store, ['--root', store]);
  t.equal(first.code, 0, first.stderr);
  const dead = keeperOf(store);
  process.kill(dead.pid, 'SIGKILL');
  await new Promise((resolve) => setTimeout(resolve, 100));
  const second = await probe(sub, store, ['--root', store]);
  t.equal(second.code, 0, second.stderr);
  const replaced = keeperOf(store);
  t.not(replaced.pid, dead.pid);
  t.equal(second.records[0].userns, String(replaced.pid));

  // A forged record: pid 1 (root's, in our namespace), then one of the user's own plain sleeps.
  const plain = spawn('setpriv', ['--reuid', String(sub.uid), '--regid', String(sub.gid), '--init-groups', 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => plain.kill('SIGKILL'));
  await new Promise((resolve) => setTimeout(resolve, 200));
  const stat = readFileSync(`/proc/${plain.pid}/stat`, 'utf8');
  for (const forged of [
    { ...replaced, pid: 1, startTime: '1' },
    { ...replaced, pid: plain.pid, startTime: stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] },
  ]) {
    writeFileSync(join(store, 'run', 'userns.json'), JSON.stringify(forged));
    const run = await probe(sub, store, ['--root', store]);
    t.equal(run.code, 0, run.stderr);
    t.not(run.records[0].userns, String(forged.pid), `not joined: pid ${forged.pid}`);
    t.equal(run.records[0].euid, 0);
    // The store's teardown ends the last keeper only.
    if (forged.pid === 1) t.teardown(() => process.kill(Number(run.records[0].userns), 'SIGKILL'));
  }
  t.equal(readFileSync(`/proc/${replaced.pid}/comm`, 'utf8'), 'sleep\n', 'a live keeper forgotten by a forged record is left alone');
  process.kill(replaced.pid, 'SIGKILL');
});

t.test('a signal to the tool reaches it inside; it dies of it and so does the outer one', async (t) => {
  const store = userStore(nosub, t);
  let sent = false;
  const run = await probe(nosub, store, ['--wait', '--root', store], {
    timeoutMs: 20_000,
    onStdout: (stdout, child) => {
      if (!sent && stdout.includes('"probe"')) {
        sent = true;
        child.kill('SIGTERM');
      }
    },
  });
  t.equal(run.signal, 'SIGTERM', run.stderr);
});

t.test('an unsafe store is refused outside, before any namespace', async (t) => {
  const store = userStore(sub, t);
  mkdirSync(store);
  chownSync(store, sub.uid, sub.gid);
  chmodSync(join(store, '..'), 0o777);
  const run = await probe(sub, store, ['--root', join(store, 'inner'), '--log-format=json']);
  t.equal(run.code, 1);
  t.match(run.stderr, /ERR_STORE_UNSAFE/);
  t.notOk(existsSync(join(store, 'inner')), 'nothing made');
});

t.test('no unshare on PATH: ERR_USERNS_UNAVAILABLE before the tool runs', async (t) => {
  const store = userStore(nosub, t);
  const run = await probe(nosub, store, ['--root', store, '--log-format=json'], { env: { PATH: '/nonexistent' } });
  t.equal(run.code, 1);
  t.match(JSON.parse(run.stderr), { code: 'ERR_USERNS_UNAVAILABLE', message: /unshare \(util-linux\) is not installed/, hint: /install util-linux/ });
  t.strictSame(
    run.records.filter((r) => r.type === 'probe'),
    [],
    'the tool did not run',
  );
  t.notOk(existsSync(join(store, 'run', 'userns.json')), 'no keeper recorded');
});

t.test('root never enters a namespace: no keeper, no run/', async (t) => {
  const store = userStore(sub, t);
  const run = await probe({ ...sub, uid: 0, gid: 0 }, store, ['--root', store]);
  t.equal(run.code, 0, run.stderr);
  t.match(run.records[0], { euid: 0, uidMap: ['0 0 4294967295'], userns: null, root: store });
  t.notOk(existsSync(join(store, 'run')));
});
