/**
 * ctr-logs on real detached containers (ctr-spawn -d): streams kept apart,
 * --follow to the end and across rotation, --tail, --since, --timestamps,
 * `log` records, addressing by name, id, prefix and record; and what it
 * refuses: unknown and ambiguous ids, forged records, bad lines and flags.
 * Then the pure parts, table-driven: --since values and the selection.
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '@conveyor/lib-common/store';
import { removeContainerFully } from '@conveyor/lib-common/container/remove';
import { listContainers, readState } from '@conveyor/lib-common/container/state';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';
import { parseDuration, parseSince } from '../src/since.js';
import { selectEntries } from '../src/logs.js';

const root = tempStore('conveyor-logs-');
const store = new Store(root);
const rootfs = busyboxRootfs(root, 'latest');
t.teardown(async () => {
  for (const entry of await listContainers(store)) await removeContainerFully(store, entry).catch(() => undefined);
  removeStore(root);
});

const logs = (args: string[], input = '') => runTool('ctr-logs', ['--root', root, ...args], { input });
const spawnDetached = async (args: string[]) => {
  const r = await runTool('ctr-spawn', ['-d', ...args], { input: JSON.stringify(rootfs) + '\n' });
  if (r.code !== 0) throw new Error(`ctr-spawn -d failed: ${r.stderr}`);
  return r.records[0];
};

t.test('follows a container to its end with stdout and stderr on their own streams; then tail, since, timestamps, records', async (t) => {
  const record = await spawnDetached(['--name', 'chatty', '--', 'sh', '-c', 'echo o1; echo e1 >&2; sleep 0.5; echo o2; sleep 0.5; echo e2 >&2']);
  const followed = await logs(['-f', 'chatty']);
  t.equal(followed.code, 0, followed.stderr);
  t.equal(followed.stdout, 'o1\no2\n', 'stdout lines on stdout');
  t.equal(followed.stderr, 'e1\ne2\n', 'stderr lines on stderr');
  t.equal((await readState(store, record.id))?.status, 'exited', '-f ended with the container');

  const cases: [string[], string, string][] = [
    [['--tail', '1'], '', 'e2\n'],
    [['-n', '2'], 'o2\n', 'e2\n'],
    [['--tail', '0'], '', ''],
    [['--tail', 'all'], 'o1\no2\n', 'e1\ne2\n'],
    [['--since', '1h'], 'o1\no2\n', 'e1\ne2\n'],
    [['--since', '2099-01-01T00:00:00Z'], '', ''],
    [['--since', '1000000000'], 'o1\no2\n', 'e1\ne2\n'],
  ];
  for (const [flags, stdout, stderr] of cases) {
    const r = await logs([...flags, 'chatty']);
    t.equal(r.code, 0, `${flags.join(' ')}: ${r.stderr}`);
    t.equal(r.stdout, stdout, `${flags.join(' ')}: stdout`);
    t.equal(r.stderr, stderr, `${flags.join(' ')}: stderr`);
  }
  const stamped = await logs(['-t', record.id]);
  t.match(stamped.stdout, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z o1\n\S+Z o2\n$/, '--timestamps prefixes each line; a full id works');
  const json = await logs(['--log-format=json', record.id.slice(0, 12)]);
  t.equal(json.code, 0, 'a unique prefix works');
  const fields = json.records.map((r) => [r.type, r.v, r.id, r.stream, r.log]);
  // o1 and e1 are written at once to two pipes: which the supervisor reads first is not fixed (as with Docker).
  t.strictSame(
    fields.slice(0, 2).sort(),
    [
      ['log', 1, record.id, 'stderr', 'e1\n'],
      ['log', 1, record.id, 'stdout', 'o1\n'],
    ],
    '--log-format=json: log records on stdout',
  );
  t.strictSame(
    fields.slice(2),
    [
      ['log', 1, record.id, 'stdout', 'o2\n'],
      ['log', 1, record.id, 'stderr', 'e2\n'],
    ],
    'in the order written',
  );
  t.equal(json.stderr, '');
  const fromRecord = await logs([], `{"type":"note","v":1}\n${JSON.stringify(record)}\n`);
  t.equal(fromRecord.stdout, 'o1\no2\n', 'the first container record on stdin names it');
});

t.test('-f follows across rotation and gets every line once, in order', async (t) => {
  await spawnDetached([
    '--name',
    'rotating',
    '--log-opt',
    'max-size=1k',
    '--log-opt',
    'max-file=2',
    '--',
    'sh',
    '-c',
    'i=1; while [ $i -le 40 ]; do echo "line $i of forty, padded to a length"; i=$((i+1)); sleep 0.05; done',
  ]);
  const r = await logs(['-f', 'rotating']);
  t.equal(r.code, 0, r.stderr);
  const numbers = r.stdout
    .trim()
    .split('\n')
    .map((l) => Number(l.split(' ')[1]));
  t.equal(numbers.at(-1), 40, 'to the last line');
  t.strictSame(
    numbers,
    numbers.map((_, i) => numbers[0] + i),
    'contiguous from the first line still kept',
  );
  const after = await logs(['rotating']);
  const kept = after.stdout.trim().split('\n');
  t.ok(kept.length < 40 && kept.at(-1) === 'line 40 of forty, padded to a length', 'the capped log kept only the newest lines');
});

t.test('refuses what it cannot use', async (t) => {
  // Two containers whose ids share a prefix (leftover directories with a state are enough to be found).
  for (const suffix of ['1', '2']) {
    const id = 'abcdef'.padEnd(63, '0') + suffix;
    mkdirSync(join(root, 'containers', id), { recursive: true });
    writeFileSync(join(root, 'containers', id, 'state.json'), JSON.stringify({ type: 'container', v: 1, id, status: 'exited', store: root }));
  }
  const cases: [string[], string, number, string | RegExp][] = [
    [['no-such-name'], '', 1, 'ERR_CONTAINER_NOT_FOUND'],
    [['abcdef'], '', 1, 'ERR_CONTAINER_AMBIGUOUS'],
    [['--bogus', 'x'], '', 2, 'ERR_USAGE'],
    [['--tail', '-1', 'x'], '', 2, 'ERR_USAGE'],
    [['--since', 'yesterday', 'x'], '', 2, 'ERR_USAGE'],
    [['a', 'b'], '', 2, 'ERR_USAGE'],
    [[], '{"type":"container","v":1,"id":"../../etc"}\n', 2, 'ERR_INPUT_RECORD'],
    [[], '{not json\n', 2, 'ERR_INPUT_JSON'],
    [[], '', 2, 'ERR_INPUT_RECORD'],
  ];
  for (const [args, input, code, error] of cases) {
    const r = await logs(['--log-format=json', ...args], input);
    t.equal(r.code, code, `${args.join(' ') || JSON.stringify(input)}: exit ${code}`);
    t.equal(r.logs[0]?.code, error, `${args.join(' ') || JSON.stringify(input)}: ${error}`);
    t.equal(r.stdout, '', 'nothing on stdout');
  }
  const bad = await logs([], '\n{not json\n');
  t.match(bad.stderr, /stdin:2/, 'a bad line is named by its number');
  const prefixed = await logs(['abcdef'.padEnd(63, '0') + '1']);
  t.equal(prefixed.code, 0, 'a container without a log prints nothing');
  t.equal(prefixed.stdout, '');
});

const NOW = Date.parse('2026-11-29T21:00:00Z');

t.test('--since values', async (t) => {
  const cases: [string, number][] = [
    ['10m', NOW - 600_000],
    ['1h30m', NOW - 5_400_000],
    ['45s', NOW - 45_000],
    ['1.5h', NOW - 5_400_000],
    ['500ms', NOW - 500],
    ['2026-11-29T20:00:00Z', NOW - 3_600_000],
    ['2026-11-29T22:00:00+02:00', NOW - 3_600_000],
    ['2026-11-29T20:00:00.5Z', NOW - 3_599_500],
    ['2026-11-29T20:00:00', NOW - 3_600_000],
    ['2026-11-29', Date.parse('2026-11-29T00:00:00Z')],
    ['1764450000', 1_764_450_000_000],
    ['1764450000.25', 1_764_450_000_250],
  ];
  for (const [text, expected] of cases) t.equal(parseSince(text, NOW), expected, text);
  for (const bad of ['', 'yesterday', '10', '-5m', '10x', '2026-13-45T00:00:00Z', '1h 30m']) {
    if (bad === '10') continue; // bare digits are Unix seconds
    t.throws(() => parseSince(bad, NOW), { code: 'ERR_USAGE' }, JSON.stringify(bad));
  }
  t.equal(parseDuration('10'), undefined, 'a duration needs a unit');
});

t.test('selection: since, then the last N', async (t) => {
  const entries = [1, 2, 3, 4].map((n) => ({ log: `${n}\n`, stream: 'stdout' as const, time: new Date(NOW + n * 1000).toISOString() }));
  const cases: [{ since?: number; tail?: number }, string[]][] = [
    [{}, ['1\n', '2\n', '3\n', '4\n']],
    [{ tail: 2 }, ['3\n', '4\n']],
    [{ tail: 0 }, []],
    [{ tail: 10 }, ['1\n', '2\n', '3\n', '4\n']],
    [{ since: NOW + 3000 }, ['3\n', '4\n']],
    [{ since: NOW + 2000, tail: 1 }, ['4\n']],
    [{ since: NOW + 9000 }, []],
  ];
  for (const [options, expected] of cases)
    t.strictSame(
      selectEntries(entries, options).map((e) => e.log),
      expected,
      JSON.stringify(options),
    );
});
