/** LineCutter: the lines of a table of inputs whatever the chunks, numbered as readLines numbers them; a line too long named. */
import t from 'tap';
import { LineCutter } from '../src/line-cutter.js';

/** Every line of `input` cut from chunks of `size` bytes, with its number. */
function cutAll(input: string, size: number, max = 64): [number, string][] {
  const cutter = new LineCutter('stdin', max);
  const bytes = Buffer.from(input);
  const lines: [number, string][] = [];
  for (let at = 0; at < bytes.length; at += size) {
    // One buffer read into again for every chunk, as a reader does.
    const chunk = Buffer.from(bytes.subarray(at, at + size));
    for (const line of cutter.cut(chunk)) lines.push([cutter.count, line.toString()]);
    chunk.fill(0);
  }
  for (const line of cutter.rest()) lines.push([cutter.count, line.toString()]);
  return lines;
}

// [what, input, lines]
const cases: [string, string, [number, string][]][] = [
  ['nothing', '', []],
  ['one line', '{"a":1}\n', [[1, '{"a":1}']]],
  [
    'no newline at the end',
    '{"a":1}\n{"b":2}',
    [
      [1, '{"a":1}'],
      [2, '{"b":2}'],
    ],
  ],
  [
    'blank lines are lines (counted)',
    '\n\n{"a":1}\n',
    [
      [1, ''],
      [2, ''],
      [3, '{"a":1}'],
    ],
  ],
  [
    'CRLF keeps its CR (callers trim)',
    'x\r\ny\r\n',
    [
      [1, 'x\r'],
      [2, 'y\r'],
    ],
  ],
  ['UTF-8 split across chunks', '"é€😀"\n', [[1, '"é€😀"']]],
];

for (const [what, input, lines] of cases) {
  for (const size of [1, 3, 7, 1 << 16]) {
    t.strictSame(cutAll(input, size), lines, `${what}, in chunks of ${size}`);
  }
}

t.test('a line longer than the limit is ERR_INPUT_JSON naming its line, ended or not', async (t) => {
  for (const size of [1, 5, 1 << 16]) {
    t.throws(() => cutAll(`ok\n${'x'.repeat(20)}\n`, size, 10), { code: 'ERR_INPUT_JSON', message: /^stdin:2: line longer than 10 bytes/ });
    t.throws(() => cutAll(`ok\n${'x'.repeat(20)}`, size, 10), { code: 'ERR_INPUT_JSON', details: { source: 'stdin', line: 2 } });
  }
  t.strictSame(cutAll(`${'x'.repeat(10)}\n`, 4, 10), [[1, 'x'.repeat(10)]], 'exactly the limit is accepted');
});
