import t from 'tap';
import { parseBlkioServiceBytes, parseIoStat, statField } from '../src/container/cgroup.js';
import { parseNetDev, parseProcStat, type StatsSample, statsRecord } from '../src/container/stats.js';

t.test('statField reads `key value` lines', async (t) => {
  const cases: [string | undefined, string, number | undefined][] = [
    ['usage_usec 1500\nuser_usec 1000\n', 'usage_usec', 1500],
    ['usage_usec 1500\nuser_usec 1000\n', 'user_usec', 1000],
    ['total_inactive_file 4096\ninactive_file 8192\n', 'inactive_file', 8192],
    ['nr_periods 0\nnr_throttled 0\n', 'usage_usec', undefined],
    ['usage_usec garbage\n', 'usage_usec', undefined],
    [undefined, 'usage_usec', undefined],
  ];
  for (const [text, key, expected] of cases) t.equal(statField(text, key), expected, `${key} in ${JSON.stringify(text)}`);
});

t.test('io.stat (v2) and blkio io_service_bytes (v1) are summed over devices', async (t) => {
  t.strictSame(parseIoStat('8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=100 wbytes=0\n'), { read: 4196, write: 8192 });
  t.strictSame(parseIoStat(''), { read: 0, write: 0 });
  t.strictSame(parseIoStat('8:0 rbytes=x wbytes=\n'), { read: 0, write: 0 }, 'malformed numbers count as nothing');
  t.strictSame(parseBlkioServiceBytes('8:0 Read 4096\n8:0 Write 512\n8:0 Sync 4608\n8:16 Read 1\nTotal 4609\n'), { read: 4097, write: 512 });
  t.strictSame(parseBlkioServiceBytes('Total 0\n'), { read: 0, write: 0 });
});

t.test('/proc/stat: total CPU time and online CPUs', async (t) => {
  const text = 'cpu  100 0 50 800 50 0 0 0 7 0\ncpu0 50 0 25 400 25 0 0 0 0 0\ncpu1 50 0 25 400 25 0 0 0 0 0\nintr 1 2 3\n';
  // user nice system idle iowait irq softirq steal = 1000 ticks of 10 ms; guest (7) is inside user already.
  t.strictSame(parseProcStat(text), { totalNs: 1000 * 1e7, onlineCpus: 2 });
  t.strictSame(parseProcStat(''), { totalNs: 0, onlineCpus: 1 }, 'never zero CPUs');
});

t.test('/proc/<pid>/net/dev: every interface but loopback', async (t) => {
  const text = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0       0          0',
    '  eth0:    1000      10    0    0    0     0          0         0     2000      20    0    0    0     0       0          0',
    '  eth1:      10       1    0    0    0     0          0         0       20       2    0    0    0     0       0          0',
  ].join('\n');
  t.strictSame(parseNetDev(text), { rx: 1010, tx: 2020 });
  t.strictSame(parseNetDev(text.split('\n').slice(0, 3).join('\n')), { rx: 0, tx: 0 }, 'loopback only');
});

const GiB = 1024 ** 3;
const sample = (cpuUsageNs: number, totalNs: number, usage: Partial<StatsSample['usage']> = {}, net?: StatsSample['net']): StatsSample => ({
  usage: { cpuUsageNs, memoryUsage: 100, memoryInactiveFile: 0, pids: 1, blockRead: 0, blockWrite: 0, ...usage },
  host: { totalNs, onlineCpus: 2 },
  net,
});
const time = new Date('2026-11-29T21:00:00.000Z');

t.test("statsRecord: docker stats' arithmetic", async (t) => {
  // [what, before, now, host memory, expected fields]
  const cases: [string, StatsSample, StatsSample, number, Record<string, unknown>][] = [
    ['one CPU fully used of two: 100%', sample(0, 0), sample(1e9, 2e9), 8 * GiB, { cpuPercent: 100, cpuUsageNs: 1e9 }],
    ['a quarter of one CPU', sample(1e9, 10e9), sample(1.25e9, 12e9), 8 * GiB, { cpuPercent: 25 }],
    ['no host time passed: 0, not a division by zero', sample(0, 5e9), sample(1e9, 5e9), 8 * GiB, { cpuPercent: 0 }],
    ['a counter that went back (a restarted cgroup): 0', sample(5e9, 0), sample(1e9, 2e9), 8 * GiB, { cpuPercent: 0 }],
    [
      'inactive page cache left out of usage, against the limit',
      sample(0, 0),
      sample(0, 1e9, { memoryUsage: 64 * 1024 ** 2, memoryInactiveFile: 32 * 1024 ** 2, memoryLimit: 128 * 1024 ** 2 }),
      8 * GiB,
      { memoryUsage: 32 * 1024 ** 2, memoryLimit: 128 * 1024 ** 2, memoryPercent: 25 },
    ],
    [
      'inactive above usage (counted at different moments): usage kept',
      sample(0, 0),
      sample(0, 1e9, { memoryUsage: 1000, memoryInactiveFile: 4000 }),
      8 * GiB,
      { memoryUsage: 1000 },
    ],
    ['no limit: the host memory', sample(0, 0), sample(0, 1e9, { memoryUsage: GiB }), 4 * GiB, { memoryLimit: 4 * GiB, memoryPercent: 25 }],
    ['a limit above the host memory: the host memory', sample(0, 0), sample(0, 1e9, { memoryLimit: 64 * GiB }), 4 * GiB, { memoryLimit: 4 * GiB }],
    ['percentages rounded to two decimals', sample(0, 0), sample(1e9, 3e9), 8 * GiB, { cpuPercent: 66.67 }],
    [
      'pids and block I/O as read',
      sample(0, 0),
      sample(0, 1e9, { pids: 7, blockRead: 4096, blockWrite: 512 }),
      GiB,
      { pids: 7, blockRead: 4096, blockWrite: 512 },
    ],
    [
      'unreadable counters are zero',
      sample(0, 0),
      { usage: {}, host: { totalNs: 1e9, onlineCpus: 1 } },
      GiB,
      { cpuUsageNs: 0, memoryUsage: 0, pids: 0, blockRead: 0 },
    ],
  ];
  for (const [what, before, now, hostMemory, expected] of cases) {
    t.match(statsRecord({ id: 'a'.repeat(64), name: 'web' }, before, now, hostMemory, time), expected, what);
  }
});

t.test('statsRecord: the record shape; net only when read', async (t) => {
  const record = statsRecord({ id: 'b'.repeat(64) }, sample(0, 0), sample(0, 1e9, {}, { rx: 10, tx: 20 }), GiB, time);
  t.strictSame(Object.keys(record), [
    'type',
    'v',
    'id',
    'time',
    'cpuPercent',
    'cpuUsageNs',
    'memoryUsage',
    'memoryLimit',
    'memoryPercent',
    'pids',
    'blockRead',
    'blockWrite',
    'netRx',
    'netTx',
  ]);
  t.match(record, { type: 'stats', v: 1, time: '2026-11-29T21:00:00.000Z', netRx: 10, netTx: 20 });
  t.notOk('name' in record, 'no name when it has none');
  const hostNet = statsRecord({ id: 'b'.repeat(64), name: 'x' }, sample(0, 0), sample(0, 1e9), GiB, time);
  t.notOk('netRx' in hostNet || 'netTx' in hostNet, 'left out when not readable (or --net host)');
  t.equal(hostNet.name, 'x');
});
