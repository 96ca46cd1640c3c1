/**
 * container/log: the json-file writer (lines, partial lines, the 16 KiB cap,
 * rotation), the readers, and following a log across rotations.
 */
import t from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { followLog, type LogEntry, LogWriter, parseLogLine, PARTIAL_LINE_BYTES, readLogEntries, readLogHistory, utf8Boundary } from '../src/container/log.js';

const FIXED_TIME = () => '2026-11-29T21:00:00.000Z';
type Chunk = ['stdout' | 'stderr', string];

t.test('lines, pieces and streams become entries (table)', async (t) => {
  const big = 'x'.repeat(PARTIAL_LINE_BYTES * 2 + 100);
  const cases: { name: string; chunks: Chunk[]; expected: [string, string][] }[] = [
    {
      name: 'one line per entry',
      chunks: [['stdout', 'a\nb\n']],
      expected: [
        ['stdout', 'a\n'],
        ['stdout', 'b\n'],
      ],
    },
    {
      name: 'a line split across chunks',
      chunks: [
        ['stdout', 'he'],
        ['stdout', 'llo\n'],
      ],
      expected: [['stdout', 'hello\n']],
    },
    {
      name: 'streams keep their own unfinished lines',
      chunks: [
        ['stdout', 'out-'],
        ['stderr', 'err\n'],
        ['stdout', 'line\n'],
      ],
      expected: [
        ['stderr', 'err\n'],
        ['stdout', 'out-line\n'],
      ],
    },
    { name: 'the unterminated rest is written at close', chunks: [['stderr', 'no newline']], expected: [['stderr', 'no newline']] },
    { name: 'an empty line is an entry', chunks: [['stdout', '\n']], expected: [['stdout', '\n']] },
    {
      name: 'a long line is cut into 16 KiB pieces',
      chunks: [['stdout', `${big}\n`]],
      expected: [
        ['stdout', 'x'.repeat(PARTIAL_LINE_BYTES)],
        ['stdout', 'x'.repeat(PARTIAL_LINE_BYTES)],
        ['stdout', 'x'.repeat(100) + '\n'],
      ],
    },
    { name: 'non-ASCII text survives', chunks: [['stdout', 'grüße ✓\n']], expected: [['stdout', 'grüße ✓\n']] },
  ];
  for (const c of cases) {
    const path = join(t.testdir({}), 'ctr.log');
    const writer = new LogWriter(path, { maxSize: 1 << 20, maxFiles: 1 }, FIXED_TIME);
    for (const [stream, text] of c.chunks) writer.write(stream, Buffer.from(text));
    writer.close();
    const entries = readLogEntries(path);
    t.strictSame(
      entries.map((e) => [e.stream, e.log]),
      c.expected,
      c.name,
    );
    t.ok(
      entries.every((e) => e.time === FIXED_TIME()),
      `${c.name}: timed`,
    );
  }
});

t.test('a multi-byte character split between chunks is joined again', async (t) => {
  const path = join(t.testdir({}), 'ctr.log');
  const writer = new LogWriter(path);
  const bytes = Buffer.from('✓\n');
  writer.write('stdout', bytes.subarray(0, 1));
  writer.write('stdout', bytes.subarray(1));
  writer.close();
  t.equal(readLogEntries(path)[0].log, '✓\n');
});

t.test('a piece cut at the cap never splits a character', async (t) => {
  const path = join(t.testdir({}), 'ctr.log');
  const writer = new LogWriter(path, { maxSize: 1 << 20, maxFiles: 1 }, FIXED_TIME);
  // One byte short of the cap, then a three-byte character across it.
  const text = `${'a'.repeat(PARTIAL_LINE_BYTES - 1)}✓tail\n`;
  writer.write('stdout', Buffer.from(text));
  writer.close();
  const entries = readLogEntries(path);
  t.strictSame(
    entries.map((e) => e.log),
    ['a'.repeat(PARTIAL_LINE_BYTES - 1), '✓tail\n'],
  );
  t.notOk(
    entries.some((e) => e.log.includes('\ufffd')),
    'no replacement characters',
  );
  const boundaries: [number[], number][] = [
    [[0x61, 0x62], 2],
    [[0x61, 0xe2], 1],
    [[0x61, 0xe2, 0x9c], 1],
    [[0x61, 0xe2, 0x9c, 0x93], 4],
    [[0xf0, 0x9f, 0x98], 0],
    [[0xc3, 0xbc], 2],
  ];
  for (const [bytes, cut] of boundaries) t.equal(utf8Boundary(Buffer.from(bytes)), cut, bytes.map((b) => b.toString(16)).join(' '));
});

t.test('rotation keeps max-file files of at most max-size bytes, newest last', async (t) => {
  const cases = [
    { maxFiles: 3, lines: 40 },
    { maxFiles: 1, lines: 40 },
    { maxFiles: 2, lines: 3 },
  ];
  for (const { maxFiles, lines } of cases) {
    const dir = t.testdir({});
    const path = join(dir, 'ctr.log');
    const writer = new LogWriter(path, { maxSize: 300, maxFiles }, FIXED_TIME);
    for (let i = 1; i <= lines; i++) writer.write('stdout', Buffer.from(`line ${i}\n`));
    writer.close();
    const files = ['ctr.log', 'ctr.log.1', 'ctr.log.2', 'ctr.log.3'].filter((f) => existsSync(join(dir, f)));
    const expectedFiles = lines === 3 ? ['ctr.log'] : ['ctr.log', 'ctr.log.1', 'ctr.log.2'].slice(0, maxFiles);
    t.strictSame(files, expectedFiles, `max-file ${maxFiles}, ${lines} lines: files`);
    t.ok(
      files.every((f) => statSync(join(dir, f)).size <= 300),
      'each file within max-size',
    );
    const numbers = readLogEntries(path).map((e) => Number(e.log.split(' ')[1]));
    t.equal(numbers.at(-1), lines, 'the newest entry is last');
    t.strictSame(
      numbers,
      numbers.map((_, i) => numbers[0] + i),
      'contiguous, oldest first, across files',
    );
  }
});

t.test('readers skip what is not an entry', async (t) => {
  const bad = ['', 'not json', '{"log":1,"stream":"stdout","time":"x"}', '{"log":"a","stream":"stdin","time":"x"}', '{"log":"a","stream":"stdout"}', 'null'];
  for (const line of bad) t.equal(parseLogLine(line), undefined, JSON.stringify(line));
  t.strictSame(parseLogLine('{"log":"a\\n","stream":"stderr","time":"t"}'), { log: 'a\n', stream: 'stderr', time: 't' });
  const path = join(t.testdir({}), 'ctr.log');
  writeFileSync(path, '{"log":"a\\n","stream":"stdout","time":"t"}\ngarbage\n{"log":"b\\n","stream":"stdout","time":"t"}\n{"log":"cut sh');
  t.strictSame(
    readLogEntries(path).map((e) => e.log),
    ['a\n', 'b\n'],
    'a bad line and a half-written last line are skipped',
  );
  t.strictSame(readLogEntries(join(t.testdir({}), 'missing.log')), [], 'no file, no entries');
});

t.test('following goes on from the history, across rotation, until the writer is done', async (t) => {
  const path = join(t.testdir({}), 'ctr.log');
  const writer = new LogWriter(path, { maxSize: 200, maxFiles: 2 }, FIXED_TIME);
  writer.write('stdout', Buffer.from('old 1\nold 2\n'));
  const history = readLogHistory(path);
  t.strictSame(
    history.entries.map((e) => e.log),
    ['old 1\n', 'old 2\n'],
  );
  let active = true;
  const seen: LogEntry[] = [];
  const following = (async () => {
    for await (const entry of followLog(path, { active: () => active, intervalMs: 10 }, history.cursor)) seen.push(entry);
  })();
  // Enough lines to rotate once (about 60 bytes an entry), with pauses so the follower looks in between.
  for (let i = 1; i <= 6; i++) {
    writer.write(i % 2 ? 'stdout' : 'stderr', Buffer.from(`new ${i}\n`));
    await new Promise((resolve) => setTimeout(resolve, 30));
  }
  writer.write('stdout', Buffer.from('last\n'));
  writer.close();
  active = false;
  await following;
  t.ok(existsSync(`${path}.1`), 'the log rotated while followed');
  t.strictSame(
    seen.map((e) => e.log),
    ['new 1\n', 'new 2\n', 'new 3\n', 'new 4\n', 'new 5\n', 'new 6\n', 'last\n'],
    'every new entry once, in order',
  );
  t.strictSame(seen.map((e) => e.stream).slice(0, 2), ['stdout', 'stderr']);
  t.match(readFileSync(path, 'utf8'), /last/);
});
