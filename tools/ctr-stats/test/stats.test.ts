/**
 * ctr-stats against real runc containers started with ctr-spawn -d: one
 * spinning a CPU (`yes > /dev/null`), one holding 48 MiB under a 128 MiB
 * limit (a file in its /dev/shm), and one that ends while it is watched. Sampled with a short
 * interval; the containers and the store are removed at the end.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { jsonLines, runTool, toolPath } from '../../../test/helpers/tools.js';
import { removeDetached, startDetached } from '../../../test/helpers/containers.js';

const MiB = 1024 * 1024;
const root = tempStore('ctr-stats-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root);
// --net private: loopback only, so the network counters are exactly 0 (pasta's eth0 sees the kernel's own IPv6 chatter).
const [busy, hog] = await Promise.all([
  startDetached(root, rootfs, ['--name', 'busy', '--net', 'private'], ['sh', '-c', 'yes > /dev/null']),
  // 48 MiB in /dev/shm (a tmpfs): memory charged to the container for as long as it runs, with no CPU spent.
  startDetached(
    root,
    rootfs,
    ['--name', 'hog', '--net', 'private', '-m', '128m'],
    ['sh', '-c', 'dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 2>/dev/null && touch /tmp/filled && exec sleep 600'],
  ),
]);
t.teardown(() => Promise.all([busy, hog].map((c) => removeDetached(root, c.id))));
// /tmp/filled (seen through the overlay) says the 48 MiB are in place.
const filled = join(root, 'containers', hog.id, 'merged', 'tmp', 'filled');
for (let i = 0; i < 400 && !existsSync(filled); i++) await new Promise((resolve) => setTimeout(resolve, 25));

const stats = (args: string[]) => runTool('ctr-stats', ['--root', root, '--log-format=json', ...args]);
const errorCode = (r: { logs: Record<string, any>[] }) => r.logs.find((l) => l.level === 'error')?.code;

t.test('--no-stream: one stats record per running container', async (t) => {
  const r = await stats(['--no-stream', '--interval', '0.5']);
  t.equal(r.code, 0, r.stderr);
  const byName = Object.fromEntries(r.records.map((record) => [record.name, record]));
  t.strictSame(Object.keys(byName).sort(), ['busy', 'hog'], 'every running container, once');
  for (const record of r.records) {
    t.match(record, { type: 'stats', v: 1, id: /^[0-9a-f]{64}$/, time: String, cpuUsageNs: Number, pids: Number, blockRead: Number, blockWrite: Number });
    t.ok(record.pids >= 1, `${record.name}: pids ${record.pids}`);
    t.equal(record.netRx, 0, `${record.name}: its own network namespace, loopback left out`);
    t.equal(record.netTx, 0);
  }
  // Not a fixed share: on a loaded machine a spinning process gets what the scheduler leaves it.
  t.ok(byName.busy.cpuPercent > 1, `a busy loop shows CPU: ${byName.busy.cpuPercent}%`);
  t.ok(byName.busy.cpuPercent > byName.hog.cpuPercent, `more than the sleeping one (${byName.hog.cpuPercent}%)`);
  t.ok(byName.busy.cpuPercent <= 100 * cpus().length + 1, 'at most 100 per CPU');
  t.ok(byName.hog.memoryUsage > 40 * MiB, `48 MiB held: ${byName.hog.memoryUsage} bytes`);
  t.equal(byName.hog.memoryLimit, 128 * MiB, '--memory is the limit');
  t.equal(byName.hog.memoryPercent, Math.round((byName.hog.memoryUsage / (128 * MiB)) * 10000) / 100);
  t.equal(byName.busy.memoryLimit, totalmem(), "no limit: the host's memory, as docker stats shows");
  t.ok(byName.busy.memoryUsage < 40 * MiB, 'the busy loop holds little memory');
});

t.test('named containers only, by name, id and prefix; a container named twice is sampled once', async (t) => {
  const r = await stats(['--no-stream', '--interval', '0.2', 'hog', busy.id, busy.id.slice(0, 10)]);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(r.records.map((record) => record.name).sort(), ['busy', 'hog']);
});

t.test('streaming: a record per interval; a container that ends drops out; exit 0 when none is left; then it is not running', async (t) => {
  // It runs until /tmp/stop exists, which the test creates (through the overlay) once a record is out.
  const brief = await startDetached(root, rootfs, ['--name', 'brief'], ['sh', '-c', 'while [ ! -f /tmp/stop ]; do sleep 0.1; done']);
  t.teardown(() => removeDetached(root, brief.id));
  const stop = join(root, 'containers', brief.id, 'merged', 'tmp', 'stop');
  const r = await runTool('ctr-stats', ['--root', root, '--interval', '0.3', 'brief'], {
    onStdout: (stdout) => {
      if (stdout.includes('\n')) writeFileSync(stop, '');
    },
  });
  t.equal(r.code, 0, r.stderr);
  t.ok(r.records.length >= 1, `records until it ended: ${r.records.length}`);
  t.ok(
    r.records.every((record) => record.id === brief.id),
    'only the named container',
  );
  const times = r.records.map((record) => Date.parse(record.time));
  t.strictSame(
    times,
    [...times].sort((a, b) => a - b),
    'in time order',
  );
  const after = await stats(['--no-stream', 'brief']);
  t.equal(after.code, 1);
  t.equal(errorCode(after), 'ERR_CONTAINER_NOT_RUNNING');
  t.match(after.stderr, /brief is not running/);
});

t.test('streaming several: each round has a record for each', async (t) => {
  const child = spawn(process.execPath, [toolPath('ctr-stats'), '--root', root, '--interval', '0.3', 'busy', 'hog']);
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (jsonLines(out).length >= 4) child.kill('SIGTERM');
    });
    child.on('close', () => resolve());
  });
  const records = jsonLines(out).slice(0, 4);
  t.strictSame(records.map((record) => record.name).sort(), ['busy', 'busy', 'hog', 'hog'], 'two rounds of two');
  const busyRecords = records.filter((record) => record.name === 'busy');
  t.ok(busyRecords[1].cpuUsageNs > busyRecords[0].cpuUsageNs, 'CPU time grows between rounds');
});

t.test('a table with --table (as on a terminal): docker stats columns', async (t) => {
  const r = await stats(['--no-stream', '--interval', '0.2', '--table', 'hog']);
  t.equal(r.code, 0, r.stderr);
  const [header, row, ...rest] = r.stdout.trimEnd().split('\n');
  t.match(header, /^CONTAINER ID\s+NAME\s+CPU %\s+MEM USAGE \/ LIMIT\s+MEM %\s+NET I\/O\s+BLOCK I\/O\s+PIDS$/);
  t.match(row, new RegExp(`^${hog.id.slice(0, 12)}\\s+hog\\s+\\d+\\.\\d\\d%\\s+[\\d.]+MiB / 128MiB\\s+\\d+\\.\\d\\d%\\s+0B / 0B\\s+\\S+ / \\S+\\s+\\d+$`));
  t.strictSame(rest, []);
});

t.test('unknown, ambiguous, stopped and corrupt containers: exit 1 before any record', async (t) => {
  const leftover = hog.id[0] + (hog.id[1] === '0' ? '1' : '0') + hog.id.slice(2);
  mkdirSync(join(root, 'containers', leftover), { mode: 0o700 });
  t.teardown(() => rmSync(join(root, 'containers', leftover), { recursive: true, force: true }));
  const [unknown, ambiguous, stateless] = await Promise.all([
    stats(['--no-stream', 'busy', 'no-such-container']),
    stats(['--no-stream', hog.id[0]]),
    stats(['--no-stream', leftover]),
  ]);
  t.equal(unknown.code, 1);
  t.equal(errorCode(unknown), 'ERR_CONTAINER_NOT_FOUND');
  t.strictSame(unknown.records, [], 'nothing sampled');
  t.equal(ambiguous.code, 1);
  t.equal(errorCode(ambiguous), 'ERR_CONTAINER_AMBIGUOUS');
  t.equal(stateless.code, 1);
  t.equal(errorCode(stateless), 'ERR_CONTAINER_NOT_RUNNING');
  writeFileSync(join(root, 'containers', leftover, 'state.json'), '{"id": "not json');
  const corrupt = await stats(['--no-stream', leftover]);
  t.equal(corrupt.code, 1);
  t.equal(errorCode(corrupt), 'ERR_STORE_CORRUPT');
  // The listing of every container warns about it and goes on.
  const all = await stats(['--no-stream', '--interval', '0.2']);
  t.equal(all.code, 0, all.stderr);
  t.match(all.stderr, /not JSON/);
});

t.test('usage errors exit 2', async (t) => {
  const cases = [['--bogus'], ['--interval', '0'], ['--interval', 'soon'], ['--interval', '-1'], ['--no-stream=yes']];
  const runs = await Promise.all(cases.map((args) => stats(args)));
  for (const [i, r] of runs.entries()) {
    t.equal(r.code, 2, `${cases[i].join(' ')}: ${r.stderr}`);
    t.equal(errorCode(r), 'ERR_USAGE');
  }
});
