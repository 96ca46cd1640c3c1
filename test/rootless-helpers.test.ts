/**
 * test/helpers/rootless.ts itself: the two users and their subordinate ranges, runAs really drops
 * every privilege, the built tools are reachable (also through the bind-mounted checkout), and a
 * user's store is found clean or root-owned and removed whoever owns its files (keeper included).
 */
import { spawn } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  CHECKOUT_MOUNT,
  NOSUB_USER,
  SUB_RANGE,
  SUB_USER,
  ownedByRoot,
  removeUserStore,
  rootlessUser,
  runAs,
  runToolAs,
  userStore,
} from './helpers/rootless.js';

const sub = rootlessUser(SUB_USER);
const nosub = rootlessUser(NOSUB_USER);

t.test('the users exist, sub with exactly one range in subuid and subgid, nosub with none', async (t) => {
  t.not(sub.uid, 0);
  t.not(nosub.uid, 0);
  t.not(sub.uid, nosub.uid);
  t.ok(existsSync(sub.home) && existsSync(nosub.home));
  t.strictSame(rootlessUser(SUB_USER), sub, 'idempotent');
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const lines = readFileSync(file, 'utf8').split('\n');
    t.strictSame(
      lines.filter((l) => l.startsWith(`${SUB_USER}:`)),
      [`${SUB_USER}:${SUB_RANGE.start}:${SUB_RANGE.count}`],
      file,
    );
    t.strictSame(
      lines.filter((l) => l.startsWith(`${NOSUB_USER}:`)),
      [],
      file,
    );
  }
});

t.test('runAs: the user, every id and no capability, a clean environment', async (t) => {
  const run = await runAs(sub, 'sh', ['-c', 'grep -E "^(Uid|Gid|CapPrm|CapEff|CapAmb):" /proc/self/status; env; pwd'], {
    env: { EXTRA: 'yes' },
  });
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, new RegExp(`^Uid:\\s+${sub.uid}\\s+${sub.uid}\\s+${sub.uid}\\s+${sub.uid}$`, 'm'));
  t.match(run.stdout, new RegExp(`^Gid:\\s+${sub.gid}\\s+${sub.gid}\\s+${sub.gid}\\s+${sub.gid}$`, 'm'));
  t.match(run.stdout, /^CapPrm:\s+0+$/m);
  t.match(run.stdout, /^CapEff:\s+0+$/m);
  t.match(run.stdout, new RegExp(`^HOME=${sub.home}$`, 'm'));
  t.match(run.stdout, /^EXTRA=yes$/m);
  t.notMatch(run.stdout, /^XDG_RUNTIME_DIR=/m);
  t.notMatch(run.stdout, /^CONVEYOR_/m);
  t.match(run.stdout, new RegExp(`^${sub.home}$`, 'm'), 'starts in its home');
  const input = await runAs(nosub, 'cat', [], { input: 'piped\n' });
  t.equal(input.stdout, 'piped\n');
});

t.test('runToolAs reaches the built tools, directly and through the bind-mounted checkout', async (t) => {
  const direct = await runToolAs(nosub, 'img-ls', ['--version']);
  t.equal(direct.code, 0, direct.stderr);
  t.match(direct.stdout, /^img-ls /);
  process.env.CONVEYOR_RL_BIND = '1';
  t.teardown(() => delete process.env.CONVEYOR_RL_BIND);
  const bound = await runToolAs(sub, 'img-ls', ['--version']);
  t.equal(bound.code, 0, bound.stderr);
  t.match(bound.stdout, /^img-ls /);
  const where = await runAs(sub, 'sh', ['-c', `test -f ${CHECKOUT_MOUNT}/package.json && ! touch ${CHECKOUT_MOUNT}/x 2>/dev/null && echo ro`]);
  t.equal(where.stdout, 'ro\n', 'read-only in the private namespace');
  t.notOk(existsSync(join(CHECKOUT_MOUNT, 'package.json')), 'nothing mounted in ours');
});

t.test('a user store: ownedByRoot finds root-owned paths; removal takes subordinate-owned files and the keeper', async (t) => {
  const store = userStore(sub);
  const made = await runAs(sub, 'sh', ['-c', `mkdir -p ${store}/layers/a && echo x > ${store}/layers/a/f`]);
  t.equal(made.code, 0, made.stderr);
  t.strictSame(ownedByRoot(store), [], 'all the user’s');
  writeFileSync(join(store, 'rootfile'), '');
  t.strictSame(ownedByRoot(store), [`${join(store, 'rootfile')} 0:0`]);
  mkdirSync(join(store, 'layers', 'b', 'locked'), { recursive: true, mode: 0o000 });
  chownSync(join(store, 'layers', 'b', 'locked'), SUB_RANGE.start + 1, SUB_RANGE.start + 1);

  // A stand-in keeper, recorded the way lib-common/src/rootless records one.
  const keeper = spawn('setpriv', ['--reuid', String(sub.uid), '--regid', String(sub.gid), '--init-groups', 'sleep', '600'], {
    stdio: 'ignore',
  });
  await new Promise((resolve) => keeper.once('spawn', resolve));
  // setpriv execs sleep in the same process: wait for it to be sleep.
  for (let i = 0; i < 100 && !readFileSync(`/proc/${keeper.pid}/comm`, 'utf8').startsWith('sleep'); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const stat = readFileSync(`/proc/${keeper.pid}/stat`, 'utf8');
  const startTime = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  mkdirSync(join(store, 'run'));
  writeFileSync(join(store, 'run', 'userns.json'), JSON.stringify({ pid: keeper.pid, startTime }));
  const exited = new Promise((resolve) => keeper.once('exit', (_code, signal) => resolve(signal)));

  removeUserStore(store);
  t.notOk(existsSync(join(store, '..')), 'the directory is gone');
  t.equal(await exited, 'SIGKILL', 'the keeper was ended');
});
