/**
 * Limits that are enforced (not silently ignored), signals that reach the
 * container, cleanup when ctr-spawn is interrupted, and images with many layers.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { addLayers, busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { toolPath } from '../../../test/helpers/tools.js';
import { cgroupDirOf, containerDirs, containerPid, conveyorCgroups, ctrSpawn, mountsUnder, type CgroupDir } from './helpers.js';

const root = tempStore('conveyor-lim-');
t.teardown(() => removeStore(root));
const latest = busyboxRootfs(root, 'latest');

function assertClean(t: Tap.Test, shortId: string) {
  t.strictSame(mountsUnder(root), [], 'no mounts left under the store');
  t.strictSame(containerDirs(root), [], 'no container dirs left');
  t.strictSame(
    conveyorCgroups().filter((d) => d.includes(`/conveyor/${shortId}`)),
    [],
    'no cgroup dirs left',
  );
  t.notOk(existsSync('/run/conveyor-runc') && readdirSync('/run/conveyor-runc').some((e) => e.startsWith(shortId)), 'no runc state left');
}

/**
 * Runs a container with `flags` and, once it is up, hands the host pid of its
 * first process (from the runtime's state) to `inspect`; then stops it
 * (--init: tini passes SIGTERM on) and checks that nothing is left.
 */
async function whileUp<T>(t: Tap.Test, flags: string[], inspect: (pid: number) => T): Promise<T> {
  let seen: { value: T } | { error: unknown } | undefined;
  const r = await ctrSpawn(latest, ['--init', ...flags, '--', 'sh', '-c', 'hostname; echo ready; exec sleep 60'], (out, child) => {
    if (seen || !out.includes('ready\n')) return;
    try {
      seen = { value: inspect(containerPid(out.split('\n')[0])) };
    } catch (error) {
      seen = { error };
    }
    child.kill('SIGTERM');
  });
  if (!seen) throw new Error(`the container never came up: exit ${r.code}: ${r.stderr}`);
  t.equal(r.code, 143, 'stopped by SIGTERM');
  assertClean(t, r.stdout.split('\n')[0]);
  if ('error' in seen) throw seen.error;
  return seen.value;
}

/** A cgroup file's content, trimmed; undefined when the kernel does not have it. */
function cgroupFile(cgroup: CgroupDir, name: string): string | undefined {
  const path = join(cgroup.dir, name);
  return existsSync(path) ? readFileSync(path, 'utf8').trim() : undefined;
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
});

t.test("--memory limits memory, and swap as much again (Docker's default), in the container's cgroup (v1 or v2)", async (t) => {
  const limit = String(16 * 1024 * 1024);
  const found = await whileUp(t, ['-m', '16m'], (pid) => {
    const cgroup = cgroupDirOf(pid, 'memory');
    if (!cgroup) return undefined;
    const swapFile = cgroup.version === 1 ? 'memory.memsw.limit_in_bytes' : 'memory.swap.max';
    return { cgroup, swapFile, memory: cgroupFile(cgroup, cgroup.version === 1 ? 'memory.limit_in_bytes' : 'memory.max'), swap: cgroupFile(cgroup, swapFile) };
  });
  if (!found) return t.fail('the container has no memory cgroup (v1 or v2): --memory would be ignored');
  t.equal(found.memory, limit, `memory limit 16 MiB (cgroup v${found.cgroup.version}, ${found.cgroup.dir})`);
  if (found.swap === undefined) {
    t.pass('swap limit', { skip: `no ${found.swapFile}: this kernel does not account swap, so there is no swap limit to set` });
  } else if (found.cgroup.version === 1) {
    t.equal(found.swap, String(32 * 1024 * 1024), 'memory+swap limited to 32 MiB: 16 MiB of swap on top, as Docker');
  } else {
    // v2 limits swap apart from memory: runc writes memory+swap minus memory.
    t.equal(found.swap, limit, '16 MiB of swap on top of the 16 MiB, as Docker');
  }
});

t.test('a fork loop hits the pids limit', async (t) => {
  const r = await ctrSpawn(latest, ['--init', '--pids-limit', '10', '--', 'sh', '-c', 'for i in $(seq 30); do sleep 2 & done; echo loop done']);
  t.match(r.stderr, /can't fork/, 'fork fails');
  t.not(r.code, 0, 'the shell gives up (busybox sh exits when fork fails)');
  t.notMatch(r.stdout, /loop done/);
  const max = await whileUp(t, ['--pids-limit', '10'], (pid) => {
    const cgroup = cgroupDirOf(pid, 'pids');
    return cgroup && cgroupFile(cgroup, 'pids.max');
  });
  t.equal(max, '10', "pids.max is 10 in the container's cgroup");
});

t.test('--cpus sets a CFS quota', async (t) => {
  const quota = await whileUp(t, ['--cpus', '0.5'], (pid) => {
    const cgroup = cgroupDirOf(pid, 'cpu');
    if (!cgroup) return undefined;
    // v1: a file each; v2: "quota period" in cpu.max.
    return cgroup.version === 1 ? `${cgroupFile(cgroup, 'cpu.cfs_quota_us')} ${cgroupFile(cgroup, 'cpu.cfs_period_us')}` : cgroupFile(cgroup, 'cpu.max');
  });
  t.equal(quota, '50000 100000', 'half of each 100 ms period');
});

for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGUSR1'] as const) {
  t.test(`${signal} to ctr-spawn reaches the container's trap, then everything is cleaned up`, async (t) => {
    const name = signal.slice(3);
    let sent = false;
    const r = await ctrSpawn(
      latest,
      ['--', 'sh', '-c', `trap 'echo got ${name}; exit 3' ${name}; hostname; echo ready; while true; do sleep 0.1; done`],
      (out, child) => {
        if (!sent && out.includes('ready\n')) {
          sent = true;
          child.kill(signal);
        }
      },
    );
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
  // The orphaned sleep's parent exits at once; it is re-parented to pid 1. Its /proc entry goes
  // once it is reaped: waited for (10 s at most), then what is left of it is printed (Z: a zombie).
  const script =
    'sh -c "sleep 0.2 & echo \\$! > /tmp/orphan"; p=$(cat /tmp/orphan); i=0; ' +
    'while [ -e /proc/$p ] && [ $i -lt 200 ]; do i=$((i+1)); sleep 0.05; done; ' +
    'if [ -e /proc/$p ]; then cut -d" " -f3 /proc/$p/stat; else echo reaped; fi';
  const withInit = await ctrSpawn(latest, ['--init', '--', 'sh', '-c', script]);
  t.equal(withInit.stdout.trim(), 'reaped', `tini reaped the orphan ${withInit.stderr}`);
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
  const CTR_SPAWN = toolPath('ctr-spawn');
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
