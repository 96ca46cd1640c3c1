import t from 'tap';
import type { StatsRecord } from '@conveyor/lib-common/container/stats';
import { STATS_HEADERS, statsRow, statsTable } from '../src/table.js';

const MiB = 1024 ** 2;
const record = (fields: Partial<StatsRecord>): StatsRecord => ({
  type: 'stats',
  v: 1,
  id: '0123456789abcdef'.repeat(4),
  time: '2026-11-29T21:00:00.000Z',
  cpuPercent: 0,
  cpuUsageNs: 0,
  memoryUsage: 0,
  memoryLimit: 64 * MiB,
  memoryPercent: 0,
  pids: 1,
  blockRead: 0,
  blockWrite: 0,
  ...fields,
});

t.test("a row per record, in docker stats' units", async (t) => {
  const cases: [Partial<StatsRecord>, string[]][] = [
    [
      { name: 'web', cpuPercent: 12.5, memoryUsage: 1.5 * MiB, memoryPercent: 2.34, netRx: 1500, netTx: 0, blockRead: 4096, blockWrite: 2_000_000, pids: 3 },
      ['0123456789ab', 'web', '12.50%', '1.5MiB / 64MiB', '2.34%', '1.50kB / 0B', '4.10kB / 2.00MB', '3'],
    ],
    [{}, ['0123456789ab', '--', '0.00%', '0B / 64MiB', '0.00%', '--', '0B / 0B', '1']],
    [{ netRx: 0 }, ['0123456789ab', '--', '0.00%', '0B / 64MiB', '0.00%', '--', '0B / 0B', '1']],
  ];
  for (const [fields, expected] of cases) t.strictSame(statsRow(record(fields)), expected, JSON.stringify(fields));
});

t.test('the table: headers, then one line per record', async (t) => {
  const lines = statsTable([record({ name: 'a' }), record({ name: 'b' })])
    .trimEnd()
    .split('\n');
  t.equal(lines.length, 3);
  t.match(lines[0], new RegExp(`^${STATS_HEADERS.join('\\s+')}$`));
  t.equal(statsTable([]).trimEnd(), lines[0], 'no containers: the headers alone');
});
