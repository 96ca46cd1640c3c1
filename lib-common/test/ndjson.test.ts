import t from 'tap';
import { PassThrough, Readable } from 'node:stream';
import { readLines, RecordWriter } from '../src/ndjson.js';

async function collect(text: string, options = {}) {
  const out = [];
  for await (const line of readLines(Readable.from([text]), options)) out.push(line);
  return out;
}

t.test('reads one object per line, skipping blank lines', async (t) => {
  const lines = await collect('{"type":"a"}\n\n  {"type":"b","n":1}  \n');
  t.strictSame(
    lines.map((l) => l.record),
    [{ type: 'a' }, { type: 'b', n: 1 }],
  );
  t.strictSame(
    lines.map((l) => l.line),
    [1, 3],
  );
});

t.test('a final line without newline is read', async (t) => {
  const lines = await collect('{"a":1}\n{"b":2}');
  t.equal(lines.length, 2);
});

// [input, line the error must name]
const bad: [string, number][] = [
  ['{"ok":1}\n{not json}\n', 2],
  ['[1,2]\n', 1],
  ['{"ok":1}\n\n"str"\n', 3],
  ['null\n', 1],
];
for (const [input, line] of bad) {
  t.test(`bad line is reported as stdin:${line}`, async (t) => {
    await t.rejects(collect(input), { code: 'ERR_INPUT_JSON', message: new RegExp(`^stdin:${line}: `), details: { line } });
  });
}

t.test('bare references pass as text when allowed', async (t) => {
  const lines = await collect('alpine\n{"ref":"busybox"}\n', { allowBare: true });
  t.equal(lines[0].record, undefined);
  t.equal(lines[0].text, 'alpine');
  t.strictSame(lines[1].record, { ref: 'busybox' });
});

t.test('a line over the limit is bad input, not an out-of-memory', async (t) => {
  await t.rejects(collect('{"x":"' + 'a'.repeat(5000) + '"}\n', { maxLineBytes: 1000 }), { code: 'ERR_INPUT_JSON' });
});

t.test('the source name is used in messages', async (t) => {
  await t.rejects(collect('oops\n', { source: 'records.ndjson' }), { message: /^records\.ndjson:1:/ });
});

t.test('writer emits compact JSON lines', async (t) => {
  const sink = new PassThrough();
  const chunks: string[] = [];
  sink.on('data', (c) => chunks.push(String(c)));
  const writer = new RecordWriter(sink);
  await writer.write({ type: 'image', v: 1, nested: { a: [1, 2] } });
  await writer.write({ type: 'x', v: 1 });
  t.equal(chunks.join(''), '{"type":"image","v":1,"nested":{"a":[1,2]}}\n{"type":"x","v":1}\n');
});

t.test('writer turns EPIPE into a quiet close', async (t) => {
  const sink = new PassThrough();
  const writer = new RecordWriter(sink);
  const error = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
  sink.emit('error', error);
  t.ok(writer.isClosed);
  // Resolves at once (no wait for a drain that will never come) and writes nothing.
  await writer.write({ type: 'x', v: 1 });
  t.equal(sink.read(), null, 'nothing written after the reader went away');
});

t.test('text diagnostics cannot carry terminal escapes', async (t) => {
  const { Logger, printable } = await import('../src/log.js');
  t.equal(printable('manifest \x1b[2Jcleared\r\x07'), 'manifest ?[2Jcleared??');
  const sink = new PassThrough();
  let text = '';
  sink.on('data', (c) => (text += c));
  new Logger('img-fetch', sink).warn('bad \x1b]0;title\x07', { hint: 'x\x1by' });
  t.equal(text, 'img-fetch: warning: bad ?]0;title? (x?y)\n');
});

t.test('a deeply nested record is bad input (ERR_INPUT_JSON naming its line), not a stack overflow', async (t) => {
  const deep = `{"a":${'['.repeat(100000)}${']'.repeat(100000)}}`;
  await t.rejects(collect(`{"ok":1}\n${deep}\n`), { code: 'ERR_INPUT_JSON', message: /^stdin:2: JSON nested deeper than 512 levels/ });
  const deepObjects = `${'{"a":'.repeat(600)}1${'}'.repeat(600)}`;
  await t.rejects(collect(deepObjects + '\n'), { code: 'ERR_INPUT_JSON' });
  // Brackets inside strings are text, not nesting.
  const inString = JSON.stringify({ a: '['.repeat(100000), b: '\\"[[' });
  t.equal((await collect(inString + '\n'))[0].record!.a, '['.repeat(100000));
  const fine = `{"a":${'['.repeat(100)}${']'.repeat(100)}}`;
  t.equal((await collect(fine + '\n')).length, 1);
});
