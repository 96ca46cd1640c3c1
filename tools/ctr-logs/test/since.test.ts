/** ctr-logs' pure parts: --since values and the entry selection (table-driven). */
import t from 'tap';
import { parseDuration, parseSince } from '../src/since.js';
import { selectEntries } from '../src/logs.js';

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
