/**
 * The run path's phases: the CONVEYOR_TRACE=1 trace (its line format, unit
 * and from a real run), what the concurrent set-up and clean-up leave behind
 * (nothing, after a fast exit, a failure or a signal that lands while the
 * overlay and the network are being set up together), and the namespace the
 * runtime makes for a foreground --net none run.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { toolPath } from '../../../test/helpers/tools.js';
import { createTrace, NO_TRACE, traceLine } from '../src/trace.js';
import { settleAll } from '../src/settle.js';
import { containerDirs, ctrSpawn, mountsUnder } from './helpers.js';

const root = tempStore('conveyor-trace-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root);
const hasPasta = existsSync('/usr/bin/pasta');

const TRACE_LINE = /^ctr-spawn: trace +(\d+\.\d) ms ([a-z]+(?:-[a-z]+)*)(?: (\d+\.\d) ms)?$/;

/** pasta and slirp4netns processes whose command line names the store (they name its namespace files). */
function helpersOfStore(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (/(^|\/)(pasta|passt|slirp4netns)/.test(argv[0]) && argv.some((a) => a.includes(root))) found.push(`${pid} ${argv.join(' ')}`);
    } catch {
      // gone
    }
  }
  return found;
}

function assertNothingLeft(t: Tap.Test, what: string) {
  t.strictSame(mountsUnder(root), [], `${what}: nothing mounted under the store`);
  t.strictSame(containerDirs(root), [], `${what}: no container directory`);
  t.strictSame(helpersOfStore(), [], `${what}: no network helper`);
  t.strictSame(existsSync(join(root, 'names')) ? readdirSync(join(root, 'names')) : [], [], `${what}: no name held`);
}

t.test('traceLine: the format', async (t) => {
  const cases: [number, string, number | undefined, string][] = [
    [0, 'record', undefined, 'ctr-spawn: trace     0.0 ms record'],
    [12.34, 'overlay', 5.06, 'ctr-spawn: trace    12.3 ms overlay 5.1 ms'],
    [1234.56, 'runtime-exited', undefined, 'ctr-spawn: trace  1234.6 ms runtime-exited'],
    [123456.7, 'cleanup', 0, 'ctr-spawn: trace 123456.7 ms cleanup 0.0 ms'],
  ];
  for (const [at, phase, duration, expected] of cases) {
    t.equal(traceLine('ctr-spawn', at, phase, duration), expected);
    t.match(expected, TRACE_LINE);
  }
});

t.test('createTrace: marks, spans (failed ones too) and a lost stderr', async (t) => {
  let clock = 10;
  const lines: string[] = [];
  const trace = createTrace(
    'ctr-spawn',
    (line) => lines.push(line),
    () => clock,
  );
  trace.mark('record');
  trace.mark('node-started', 2.5);
  // The clock moves once the span has begun, as work does.
  const value = await trace.span(
    'overlay',
    Promise.resolve().then(() => {
      clock = 17.5;
      return 42;
    }),
  );
  t.equal(value, 42, "a span resolves to its work's value");
  await t.rejects(
    trace.span(
      'network',
      Promise.resolve().then(() => {
        clock = 20;
        throw new Error('no pasta');
      }),
    ),
    /no pasta/,
  );
  t.strictSame(lines, [
    'ctr-spawn: trace    10.0 ms record\n',
    'ctr-spawn: trace     2.5 ms node-started\n',
    'ctr-spawn: trace    17.5 ms overlay 7.5 ms\n',
    'ctr-spawn: trace    20.0 ms network 2.5 ms\n',
  ]);
  const broken = createTrace('ctr-spawn', () => {
    throw new Error('EPIPE');
  });
  t.doesNotThrow(() => broken.mark('record'), 'a trace that cannot be written is lost, not fatal');
  t.equal(await NO_TRACE.span('x', Promise.resolve(7)), 7, 'NO_TRACE passes the work through');
  t.equal(
    NO_TRACE.spanSync('x', () => 8),
    8,
    'and synchronous work',
  );
});

t.test('spanSync: the duration of synchronous work, thrown or not', async (t) => {
  let clock = 1;
  const lines: string[] = [];
  const trace = createTrace(
    'ctr-spawn',
    (line) => lines.push(line),
    () => clock,
  );
  t.equal(
    trace.spanSync('state', () => {
      clock = 1.5;
      return 'written';
    }),
    'written',
  );
  t.throws(
    () =>
      trace.spanSync('state', () => {
        clock = 4;
        throw new Error('ENOSPC');
      }),
    /ENOSPC/,
  );
  t.strictSame(lines, ['ctr-spawn: trace     1.5 ms state 0.5 ms\n', 'ctr-spawn: trace     4.0 ms state 2.5 ms\n']);
});

t.test('settleAll: waits for every step and reports the first failure in order', async (t) => {
  const order: string[] = [];
  const late = new Promise<string>((_, reject) =>
    setTimeout(() => {
      order.push('late');
      reject(new Error('first given'));
    }, 30),
  );
  const early = Promise.reject(new Error('first in time'));
  const slow = new Promise<string>((resolve) =>
    setTimeout(() => {
      order.push('slow');
      resolve('done');
    }, 60),
  );
  await t.rejects(settleAll([late, early, slow]), /first given/);
  t.strictSame(order, ['late', 'slow'], 'it returned only once the slow step had ended');
  t.strictSame(await settleAll([Promise.resolve(1), Promise.resolve('a')]), [1, 'a']);
});

t.test('CONVEYOR_TRACE=1: every phase of a run, in order, on stderr only', async (t) => {
  const run = (env: Record<string, string>) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [toolPath('ctr-spawn'), '--root', root, '--net', 'none', '--', 'echo', 'out'], {
        env: { ...process.env, ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stdout, stderr }));
      child.stdin.end(`${JSON.stringify(rootfs)}\n`);
    });
  const traced = await run({ CONVEYOR_TRACE: '1' });
  t.equal(traced.code, 0, traced.stderr);
  t.equal(traced.stdout, 'out\n', "stdout is the container's alone");
  const lines = traced.stderr.trimEnd().split('\n');
  for (const line of lines) t.match(line, TRACE_LINE, line);
  const phases = lines.map((l) => TRACE_LINE.exec(l)?.[2]);
  const expected = [
    'node-started',
    'cli-loaded',
    'modules-loaded',
    'flags',
    'spawn-loaded',
    'record',
    'container-dir',
    'spec',
    'bundle',
    'state',
    'runtime-started',
    'runtime-exited',
    'cleanup',
    'exit',
  ];
  const concurrent = (p: string | undefined) => p === 'overlay' || p === 'network' || p?.startsWith('cleanup-');
  t.strictSame(
    phases.filter((p) => !concurrent(p)),
    expected,
    'the marks and the sequential spans in order',
  );
  const steps = phases.filter((p) => p?.startsWith('cleanup-'));
  t.strictSame([...steps].sort(), ['cleanup-helper', 'cleanup-release', 'cleanup-root', 'cleanup-runtime'], "the clean-up's steps");
  t.ok(
    steps.every((p) => phases.indexOf(p) > phases.indexOf('runtime-exited') && phases.indexOf(p) < phases.indexOf('cleanup')),
    'within the clean-up',
  );
  t.ok(phases.indexOf('overlay') > phases.indexOf('container-dir') && phases.indexOf('overlay') < phases.indexOf('spec'), 'the overlay between');
  t.ok(phases.indexOf('network') > phases.indexOf('container-dir') && phases.indexOf('network') < phases.indexOf('spec'), 'the network between');
  const times = lines.slice(1).map((l) => Number(TRACE_LINE.exec(l)?.[1]));
  t.strictSame(
    times,
    [...times].sort((a, b) => a - b),
    'times since the start grow line by line',
  );
  t.ok(Number(TRACE_LINE.exec(lines[0])?.[1]) <= times[0], "Node's start-up comes first");
  assertNothingLeft(t, 'traced run');

  const quiet = await run({ CONVEYOR_TRACE: '' });
  t.equal(quiet.code, 0);
  t.equal(quiet.stderr, '', 'no trace without CONVEYOR_TRACE=1');
});

t.test("a fast exit: the container's exit code, and nothing left behind", async (t) => {
  const nets = [['--net', 'none'], ...(hasPasta ? [[]] : [])];
  for (const net of nets) {
    const what = net.length ? net.join(' ') : 'default network';
    const ok = await ctrSpawn(rootfs, ['--root', root, ...net, '--name', 'fast', '--', 'true']);
    t.equal(ok.code, 0, `${what}: ${ok.stderr}`);
    assertNothingLeft(t, what);
    const code = await ctrSpawn(rootfs, ['--root', root, ...net, '--name', 'fast', '--', 'sh', '-c', 'exit 7']);
    t.equal(code.code, 7, `${what}: the container's exit code, with its name free again`);
    assertNothingLeft(t, `${what}, exit 7`);
    const missing = await ctrSpawn(rootfs, ['--root', root, ...net, '--', 'no-such-command']);
    t.equal(missing.code, 127, `${what}: a command not found fails the set-up`);
    assertNothingLeft(t, `${what}, not found`);
  }
});

t.test('--net none in the foreground: the runtime makes the namespace, lo up; -d and -p keep a file of ours', async (t) => {
  const spec = async (flags: string[]) => {
    const r = await ctrSpawn(rootfs, ['--root', root, '--print-spec', '--net', 'none', ...flags, '--', 'true']);
    t.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout).linux.namespaces as { type: string; path?: string }[]).find((n) => n.type === 'network');
  };
  t.strictSame(await spec([]), { type: 'network' }, 'foreground: no path');
  t.match(await spec(['-p', '127.0.0.1::80']), { type: 'network', path: /\/netns$/ }, 'published ports: our namespace file, for the relay');
  t.match(await spec(['-d']), { type: 'network', path: /\/netns$/ }, 'detached: our namespace file, kept across restarts');
  const up = await ctrSpawn(rootfs, ['--root', root, '--net', 'none', '--', 'sh', '-c', 'ls /sys/class/net; cat /sys/class/net/lo/operstate']);
  t.equal(up.stdout, 'lo\nunknown\n', 'only lo, up');
  assertNothingLeft(t, '--net none');
});

t.test('the default network (pasta): lo is up, brought up by pasta itself', { skip: !hasPasta && 'pasta (passt) is not installed' }, async (t) => {
  const r = await ctrSpawn(rootfs, ['--root', root, '--', 'sh', '-c', 'cat /sys/class/net/lo/operstate; ping -c1 -W1 127.0.0.1 >/dev/null && echo pinged']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'unknown\npinged\n', 'lo up (operstate unknown), 127.0.0.1 answers');
  assertNothingLeft(t, 'pasta');
});

/** Runs ctr-spawn traced and sends `signal` when the trace reaches `phase`; resolves to its exit and stderr. */
function signalAt(phase: string, signal: NodeJS.Signals, flags: string[]): Promise<{ code: number | null; stderr: string; sent: boolean }> {
  return new Promise((resolve) => {
    // A container that ends with 143 on SIGTERM: a signal that lands just after the runtime started (the trace line
    // and the check after it are one tick apart) is forwarded to it, where a bare `sleep` as pid 1 would ignore it.
    const command = ['sh', '-c', "trap 'exit 143' TERM; sleep 30 & wait"];
    const child = spawn(process.execPath, [toolPath('ctr-spawn'), '--root', root, ...flags, '--', ...command], {
      env: { ...process.env, CONVEYOR_TRACE: '1' },
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    let sent = false;
    let again: NodeJS.Timeout | undefined;
    child.stderr.on('data', (d) => {
      stderr += d;
      // Not after the container ended: ctr-spawn's handlers go once its clean-up is done, and a SIGTERM that lands
      // after them ends Node by the signal (code null) instead of the 143 the test waits for.
      if (again && / ms runtime-exited\n/.test(stderr)) clearInterval(again);
      if (!sent && new RegExp(` ms ${phase}( |\\n)`).test(stderr)) {
        sent = true;
        child.kill(signal);
        // The set-up between the record and the runtime's start runs without a turn of the event loop, so the signal
        // is mostly handled once the container runs: forwarded to it, it may land in sh before its trap (dropped, as
        // a namespace's pid 1 drops what it does not handle): sent again until the run ends.
        again = setInterval(() => child.kill(signal), 250);
      }
    });
    child.on('close', (code, killedBy) => {
      clearInterval(again);
      // Ended by the signal itself (a re-sent one that came after ctr-spawn's handlers were gone, its clean-up done):
      // the 128+N a shell reports; what was left behind is checked apart.
      resolve({ code: code ?? (killedBy === signal ? 128 + osConstants.signals[signal] : null), stderr, sent });
    });
    child.stdin.end(`${JSON.stringify(rootfs)}\n`);
  });
}

t.test('a signal during the concurrent set-up: its exit code, and nothing left behind', async (t) => {
  const nets = [['--net', 'none'], ...(hasPasta ? [[]] : [])];
  for (const net of nets) {
    for (const phase of ['container-dir', 'overlay', 'spec', 'state']) {
      const what = `${net.length ? net.join(' ') : 'default network'}, SIGTERM at ${phase}`;
      const r = await signalAt(phase, 'SIGTERM', [...net, '--name', 'interrupted']);
      t.ok(r.sent, `${what}: sent`);
      // 143: ctr-spawn's own (before the runtime) or the container's trap. 2: the signal reached runc's init before it
      // ran sh (Go exits 2 when a signal it cannot die of, as a namespace's pid 1, arrives): the container's own exit.
      const code = r.code === 2 && /ms runtime-started/.test(r.stderr) ? 143 : r.code;
      t.equal(code, 143, `${what}: 128+15, or runc init's 2 once the runtime started (${r.code}: ${r.stderr})`);
      t.notMatch(r.stderr, /clean-up failed/, `${what}: clean-up complete`);
      assertNothingLeft(t, what);
    }
  }
});
