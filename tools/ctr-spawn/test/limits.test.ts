/**
 * Limits that are enforced (not silently ignored), signals that reach the
 * container, cleanup when ctr-spawn is interrupted, and images with many layers.
 */
import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { addLayers, busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { containerDirs, conveyorCgroups, ctrSpawn, mountsUnder } from './helpers.js';

const root = tempStore('conveyor-lim-');
t.teardown(() => removeStore(root));
const latest = busyboxRootfs(root, 'latest');

function assertClean(t: Tap.Test, shortId: string) {
  t.strictSame(mountsUnder(root), [], 'no mounts left under the store');
  t.strictSame(containerDirs(root), [], 'no container dirs left');
  t.strictSame(conveyorCgroups().filter((d) => d.includes(`/conveyor/${shortId}`)), [], 'no cgroup dirs left');
  t.notOk(existsSync('/run/conveyor-runc') && readdirSync('/run/conveyor-runc').some((e) => e.startsWith(shortId)), 'no runc state left');
}

t.test('a memory hog is OOM-killed and reported', async (t) => {
  // dd allocates a 64 MiB buffer and fills it from /dev/zero: over a 16 MiB limit.
  const r = await ctrSpawn(latest, ['-m', '16m', '--', 'sh', '-c', 'hostname >&2; exec dd if=/dev/zero of=/dev/null bs=64M count=1']);
  t.equal(r.code, 137, 'killed by SIGKILL: 128+9');
  t.match(r.stderr, /was killed by the OOM killer: memory limit 16MiB reached/);
  const short = r.stderr.split('\n')[0];
  t.match(short, /^[a-f0-9]{12}$/);
  assertClean(t, short);
  const fits = await ctrSpawn(latest, ['-m', '16m', '--', 'sh', '-c', 'exec dd if=/dev/zero of=/dev/null bs=1M count=4 2>/dev/null']);
  t.equal(fits.code, 0, 'within the limit it runs');
  t.notMatch(fits.stderr, /OOM/);
  const limit = await ctrSpawn(latest, ['-m', '16m', '--', 'cat', '/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes']);
  if (existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes')) {
    t.equal(limit.stdout, `${16 * 1024 * 1024}\n${16 * 1024 * 1024}\n`, 'memory and memory+swap limited alike (cgroup v1)');
  }
});

t.test('a fork loop hits the pids limit', async (t) => {
  const r = await ctrSpawn(latest, ['--init', '--pids-limit', '10', '--', 'sh', '-c', 'for i in $(seq 30); do sleep 2 & done; echo loop done']);
  t.match(r.stderr, /can't fork/, 'fork fails');
  t.not(r.code, 0, 'the shell gives up (busybox sh exits when fork fails)');
  t.notMatch(r.stdout, /loop done/);
  const max = await ctrSpawn(latest, ['--pids-limit', '10', '--', 'cat', '/sys/fs/cgroup/pids/pids.max']);
  t.equal(max.stdout, '10\n', 'pids.max is 10');
});

t.test('--cpus sets a CFS quota', async (t) => {
  const r = await ctrSpawn(latest, ['--cpus', '0.5', '--', 'cat', '/sys/fs/cgroup/cpu/cpu.cfs_quota_us', '/sys/fs/cgroup/cpu/cpu.cfs_period_us']);
  t.equal(r.stdout, '50000\n100000\n', r.stderr);
});

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1'] as const) {
  t.test(`${signal} to ctr-spawn reaches the container's trap, then everything is cleaned up`, async (t) => {
    const name = signal.slice(3);
    let sent = false;
    const r = await ctrSpawn(latest, ['--', 'sh', '-c', `trap 'echo got ${name}; exit 3' ${name}; hostname; echo ready; while true; do sleep 0.1; done`], (out, child) => {
      if (!sent && out.includes('ready\n')) {
        sent = true;
        child.kill(signal);
      }
    });
    t.ok(sent);
    t.equal(r.code, 3, `the trap's exit code (${r.stderr})`);
    t.match(r.stdout, new RegExp(`got ${name}\\n$`));
    assertClean(t, r.stdout.split('\n')[0]);
  });
}

t.test('SIGTERM to a container that does not trap it ends it with 143', async (t) => {
  let sent = false;
  const r = await ctrSpawn(latest, ['--init', '--', 'sh', '-c', 'hostname; echo ready; sleep 60'], (out, child) => {
    if (!sent && out.includes('ready\n')) {
      sent = true;
      child.kill('SIGTERM');
    }
  });
  t.equal(r.code, 143, 'tini forwards SIGTERM to sleep; 128+15');
  assertClean(t, r.stdout.split('\n')[0]);
});

t.test('--init reaps orphans: no zombies under pid 1', async (t) => {
  // The orphaned sleep's parent exits at once; it is re-parented to pid 1.
  const script = 'sh -c "sleep 0.2 &" ; sleep 0.6; ps -o stat,comm | grep -c "^Z" || true';
  const withInit = await ctrSpawn(latest, ['--init', '--', 'sh', '-c', script]);
  t.equal(withInit.stdout.trim(), '0', `tini reaped the orphan ${withInit.stderr}`);
  const pid1 = await ctrSpawn(latest, ['--init', '--', 'sh', '-c', 'tr "\\0" " " < /proc/1/cmdline']);
  t.match(pid1.stdout, /^\/\.conveyor-init -- sh -c/, 'tini is pid 1');
});

t.test('an image with 60 layers in a deep store runs', async (t) => {
  const deepRoot = tempStore('conveyor-deep-', 200);
  t.teardown(() => removeStore(deepRoot));
  const record = addLayers(deepRoot, busyboxRootfs(deepRoot, 'latest'), 60);
  t.ok(record.layerDirs.join(':').length > 4096, 'lower dirs exceed a page');
  const r = await ctrSpawn(record, ['--', 'sh', '-c', 'ls /layers | wc -l; cat /layers/59']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '60\nlayer 59\n');
  t.strictSame(mountsUnder(deepRoot), []);
  t.strictSame(containerDirs(deepRoot), []);
});

t.test('a pid 1 that ignores SIGTERM is killed at the third one, and cleaned up', async (t) => {
  let sent = 0;
  const r = await ctrSpawn(latest, ['--', 'sh', '-c', 'hostname; echo ready; while true; do sleep 0.1; done'], (out, child) => {
    if (sent === 0 && out.includes('ready\n')) {
      // Apart: the kernel merges a signal that is still pending with the next.
      const send = () => {
        child.kill('SIGTERM');
        if (++sent < 3) setTimeout(send, 300);
      };
      send();
    }
  });
  t.equal(sent, 3);
  t.equal(r.code, 137, 'SIGKILL: 128+9');
  t.match(r.stderr, /third SIGTERM: killing container/);
  assertClean(t, r.stdout.split('\n')[0]);
});

t.test('a signal while still waiting for the record ends ctr-spawn with 128+N', async (t) => {
  const { spawn } = await import('node:child_process');
  const { CTR_SPAWN } = await import('./helpers.js');
  // Node's own start-up SIGTERM handler (it restores the terminal, then dies of the signal) is
  // replaced by ctr-spawn's once it runs; a loaded machine may not be there yet, so wait longer
  // on each attempt. A ctr-spawn that ignores the signal, or dies of it, never gives 143.
  let result: { code: number | null; signal: string | null; stdout: string } = { code: null, signal: null, stdout: '' };
  for (const wait of [500, 1500, 4000]) {
    // stdin stays open and empty: a producer that never writes nor closes.
    const child = spawn(process.execPath, [CTR_SPAWN, '--', 'echo', 'never'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (c) => (stdout += c));
    await new Promise((resolve) => setTimeout(resolve, wait));
    child.kill('SIGTERM');
    result = await new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout })));
    child.stdin.end();
    if (result.code !== null) break;
  }
  t.equal(result.code, 143, 'SIGTERM → 143, as a shell reports it');
  t.equal(result.stdout, '', 'nothing ran');
});
