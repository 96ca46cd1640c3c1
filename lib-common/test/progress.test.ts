/**
 * Progress on a terminal: live lines per item with bytes, speed and ETA,
 * redrawn in place (cursor up, clear), done items left above; the json mode
 * unchanged; quiet off a terminal. A fake clock and a recording stream.
 */
import t from 'tap';
import { bar, formatDuration, Logger, Progress } from '../src/log.js';

function recorder(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, stream: { isTTY, columns: 100, write: (s: string) => writes.push(s) > 0 } as never };
}
const event = (id: string, current: number, total?: number) => ({ id: `sha256:${id}`, action: 'download', current, total, label: id });

// [seconds, text]
const durations: [number, string][] = [
  [0, '0s'],
  [44.6, '45s'],
  [185, '3m05s'],
  [3720, '1h02m'],
  [-3, '0s'],
];
for (const [seconds, text] of durations) t.equal(formatDuration(seconds), text, `${seconds}s reads ${text}`);

// [share, bar]
const bars: [number, string][] = [
  [0, '[          ]'],
  [0.5, '[====>     ]'],
  [1, '[=========>]'],
  [7, '[=========>]'],
];
for (const [share, text] of bars) t.equal(bar(share, 10), text, `${share} of the bar`);

t.test('a terminal gets one live line per item, redrawn in place, and done lines above them', async (t) => {
  let now = 0;
  const { writes, stream } = recorder(true);
  const progress = new Progress('img-fetch', stream, 'auto', 200, () => now);
  progress.start(event('aaa', 0, 4_000_000));
  progress.start(event('bbb', 0, 1_000_000));
  t.equal(
    writes[1],
    '\x1b[1A\r\x1b[Jaaa: download  0B / 4.00MB [                    ]\nbbb: download  0B / 1.00MB [                    ]\n',
    'two lines, the first redrawn',
  );
  now = 100;
  progress.update(event('aaa', 500_000, 4_000_000));
  t.equal(writes.length, 2, 'an update inside the interval is not drawn');
  now = 1000;
  progress.update(event('aaa', 1_000_000, 4_000_000));
  t.ok(writes[2].startsWith('\x1b[2A\r\x1b[Jaaa: download  1.00MB / 4.00MB [====>               ]  1.00MB/s  ETA 3s\nbbb: '), 'bytes, bar, speed and ETA');
  now = 2000;
  progress.done(event('bbb', 1_000_000, 1_000_000));
  t.ok(writes[3].startsWith('\x1b[2A\r\x1b[Jimg-fetch: download bbb done (1.00MB in 2s)\naaa: download '), 'the done line stays above; one live line left');
  progress.finish();
  t.equal(writes[4], '\x1b[1A\r\x1b[J', 'finish clears the live line');
});

t.test('hostile labels cannot move the cursor', async (t) => {
  const { writes, stream } = recorder(true);
  const progress = new Progress('x', stream, 'bar', 200, () => 0);
  progress.start({ id: 'i', action: 'unpack', current: 0, label: 'evil\x1b[2J\r' });
  t.equal(writes[0], 'evil?[2J?: unpack  0B\n');
});

t.test('json mode writes the same events as before; none mode and a pipe write nothing', async (t) => {
  const json = recorder(false);
  const progress = new Progress('img-fetch', json.stream, 'json', 200, () => Date.parse('2026-11-29T00:00:00Z'));
  progress.start(event('aaa', 0, 10));
  progress.update(event('aaa', 5, 10));
  progress.done(event('aaa', 10, 10));
  t.strictSame(
    json.writes.map((w) => JSON.parse(w)),
    [
      { type: 'progress', v: 1, tool: 'img-fetch', phase: 'start', ...event('aaa', 0, 10), time: '2026-11-29T00:00:00.000Z' },
      { type: 'progress', v: 1, tool: 'img-fetch', phase: 'done', ...event('aaa', 10, 10), time: '2026-11-29T00:00:00.000Z' },
    ],
    'the update inside the interval is dropped',
  );
  const piped = recorder(false);
  const quiet = new Progress('img-fetch', piped.stream);
  quiet.start(event('aaa', 0, 10));
  quiet.done(event('aaa', 10, 10));
  quiet.finish();
  t.equal(piped.writes.length, 0);
  t.equal(quiet.enabled, false);
});

t.test('a message logged on the same terminal goes above the live lines, which are redrawn below it', async (t) => {
  const { writes, stream } = recorder(true);
  const progress = new Progress('img-fetch', stream, 'bar', 200, () => 0);
  const log = new Logger('img-fetch', stream);
  log.warn('retrying');
  t.equal(writes[0], 'img-fetch: warning: retrying\n', 'no live lines yet: written as it is');
  progress.start(event('aaa', 0, 10));
  log.info('waiting');
  t.equal(writes[2], '\x1b[1A\r\x1b[Jimg-fetch: waiting\naaa: download  0B / 10B [                    ]\n');
  progress.finish();
  log.info('after');
  t.equal(writes.at(-1), 'img-fetch: after\n');
});
