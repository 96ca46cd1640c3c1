/**
 * reference-input: which records name a reference (by type, `ref` over
 * `name`, `name` + `tag`, pinned names keep their digest), bare lines,
 * passthrough order, and a malformed line named `stdin:N`.
 */
import t from 'tap';
import { Readable } from 'node:stream';
import { argumentItems, readReferences, referenceOf } from '../src/reference-input.js';

const TYPES = new Set(['image', 'tag']);

t.test('referenceOf', async (t) => {
  const cases: [Record<string, unknown>, string | undefined][] = [
    [{ type: 'image', ref: 'a:1' }, 'a:1'],
    [{ ref: 'a:1', name: 'b' }, 'a:1'],
    [{ name: 'b', tag: '2' }, 'b:2'],
    [{ name: 'b@sha256:x', tag: '2' }, 'b@sha256:x'],
    [{ type: 'tag', name: 'c' }, 'c'],
    [{ type: 'layer', ref: 'a:1' }, undefined],
    [{ type: 7, ref: 'a' }, undefined],
    [{ ref: '' }, undefined],
    [{ ref: 42 }, undefined],
  ];
  for (const [record, expected] of cases) t.equal(referenceOf(record, TYPES), expected, JSON.stringify(record));
});

t.test('readReferences', async (t) => {
  const input = Readable.from(['alpine:3.20\n', '{"type":"layer","n":1}\n', '\n', '{"type":"image","ref":"b:1"}\n']);
  const items = [];
  for await (const item of readReferences(input, TYPES)) items.push(item);
  t.same(items, [
    { kind: 'ref', ref: 'alpine:3.20', source: 'stdin:1' },
    { kind: 'passthrough', record: { type: 'layer', n: 1 } },
    { kind: 'ref', ref: 'b:1', source: 'stdin:4' },
  ]);
  const bad = readReferences(Readable.from(['a\n', '{nope\n']), TYPES);
  t.same((await bad.next()).value, { kind: 'ref', ref: 'a', source: 'stdin:1' });
  await t.rejects(bad.next(), { code: 'ERR_INPUT_JSON', message: /stdin:2/ });
  t.same(argumentItems(['x', 'y']), [
    { kind: 'ref', ref: 'x', source: 'argument 1' },
    { kind: 'ref', ref: 'y', source: 'argument 2' },
  ]);
});
