import t from 'tap';
import { Readable } from 'node:stream';
import { ConveyorError } from '../src/errors.js';
import { readLines } from '../src/ndjson.js';
import { checkErrorRecord, errorExitCode, errorRecordOf, MAX_ERROR_MESSAGE, Pipeline } from '../src/pipeline.js';

/** A pipeline attached to an array, as runCli attaches it to stdout. */
function collecting(tool = 'layer-unpack') {
  const written: object[] = [];
  const hints: string[] = [];
  const pipe = new Pipeline();
  pipe.attach({ tool, sink: { write: async (r) => void written.push(r) }, onTerminalInput: () => hints.push('hint') });
  return { pipe, written, hints };
}

async function read(text: string, pipe: Pipeline, input: Readable = Readable.from([text])) {
  const yielded: Record<string, unknown>[] = [];
  for await (const line of readLines(input, { pipeline: pipe, allowBare: true })) yielded.push(line.record ?? { bare: line.text });
  return yielded;
}

// [exit code as found in a record, what it becomes]
const exitCodes: [unknown, number][] = [
  [1, 1],
  [2, 2],
  [125, 125],
  [255, 255],
  [0, 1],
  [-1, 1],
  [256, 1],
  [1e9, 1],
  [1.5, 1],
  ['2', 1],
  [null, 1],
  [undefined, 1],
  [Number.NaN, 1],
  [{ valueOf: () => 2 }, 1],
];
for (const [value, expected] of exitCodes) {
  t.test(`exit code ${String(JSON.stringify(value))} → ${expected}`, async (t) => {
    t.equal(errorExitCode(value), expected);
  });
}

t.test('a genuine error record passes unchanged', async (t) => {
  const record = {
    type: 'error',
    v: 1,
    code: 'ERR_REGISTRY_NOT_FOUND',
    message: 'manifest unknown',
    hint: 'check the tag',
    exitCode: 1,
    tool: 'img-fetch',
    where: 'stdin:3',
  };
  t.strictSame(checkErrorRecord({ ...record }), record);
});

// [what a forged record holds, what it is passed on as]
const forged: [string, Record<string, unknown>, Record<string, unknown>][] = [
  ['an empty record', { type: 'error' }, { code: 'ERR_INTERNAL', tool: 'unknown', exitCode: 1, message: 'failed (the error record carried no message)' }],
  ['a code that is no code', { type: 'error', code: 'rm -rf /', message: 'x' }, { code: 'ERR_INTERNAL' }],
  ['a code as a number', { type: 'error', code: 42, message: 'x' }, { code: 'ERR_INTERNAL' }],
  ['a message that is an object', { type: 'error', message: { a: 1 } }, { message: 'failed (the error record carried no message)' }],
  ['a tool with a slash', { type: 'error', tool: '../../bin/sh', message: 'x' }, { tool: 'unknown' }],
  ['a where with a newline', { type: 'error', where: 'stdin:1\nfoo', message: 'x' }, { where: undefined }],
  ['an empty hint', { type: 'error', hint: '', message: 'x' }, { hint: undefined }],
  ['extra fields', { type: 'error', message: 'x', exitCode: 2, store: '/etc', __proto__: { polluted: 1 } }, { store: undefined, exitCode: 2 }],
];
for (const [name, record, expected] of forged) {
  t.test(`forged error record: ${name}`, async (t) => {
    const checked = checkErrorRecord(record) as unknown as Record<string, unknown>;
    t.match(checked, { type: 'error', v: 1 });
    for (const [key, value] of Object.entries(expected)) t.strictSame(checked[key], value, key);
  });
}

t.test('a huge message and hint are cut to size', async (t) => {
  const checked = checkErrorRecord({ type: 'error', message: 'm'.repeat(5_000_000), hint: 'h'.repeat(100_000) });
  t.equal(checked.message.length, MAX_ERROR_MESSAGE + 3);
  t.ok(checked.message.endsWith('...'));
  t.ok((checked.hint ?? '').length < 2000);
});

t.test("a tool's own failure as a record: code, exit code, tool, and the line it was on", async (t) => {
  const error = new ConveyorError('ERR_INPUT_JSON', 'stdin:4: not valid JSON', { hint: 'one object per line', details: { source: 'stdin', line: 4 } });
  t.strictSame(errorRecordOf(error, 'layer-unpack'), {
    type: 'error',
    v: 1,
    code: 'ERR_INPUT_JSON',
    message: 'stdin:4: not valid JSON',
    exitCode: 2,
    tool: 'layer-unpack',
    hint: 'one object per line',
    where: 'stdin:4',
  });
  t.equal(errorRecordOf(new ConveyorError('ERR_SPAWN_FAILED', 'x'), 'ctr-spawn').exitCode, 125);
});

t.test('readLines passes error records on in their place and yields the rest', async (t) => {
  const { pipe, written } = collecting();
  const yielded = await read(
    '{"type":"image","ref":"a"}\n{"type":"error","v":1,"code":"ERR_REGISTRY_UNAVAILABLE","message":"down","exitCode":1,"tool":"img-fetch"}\nbusybox\n',
    pipe,
  );
  t.strictSame(yielded, [{ type: 'image', ref: 'a' }, { bare: 'busybox' }], 'the error record is not yielded');
  t.strictSame(written, [{ type: 'error', v: 1, code: 'ERR_REGISTRY_UNAVAILABLE', message: 'down', exitCode: 1, tool: 'img-fetch' }]);
  t.equal(pipe.upstreamFailure?.tool, 'img-fetch');
});

t.test('with yieldErrorRecords, error records come checked, in their place, and count for the exit code', async (t) => {
  const { pipe, written } = collecting();
  const yielded: unknown[] = [];
  const input = Readable.from(['{"type":"image"}\n{"type":"error","exitCode":300,"message":"x","extra":1}\n{"type":"mount"}\n']);
  for await (const line of readLines(input, { pipeline: pipe, yieldErrorRecords: true })) yielded.push(line.record);
  t.strictSame(yielded, [{ type: 'image' }, { type: 'error', v: 1, code: 'ERR_INTERNAL', message: 'x', exitCode: 1, tool: 'unknown' }, { type: 'mount' }]);
  t.strictSame(written, [], 'the tool writes it, not the pipeline');
  t.equal(pipe.exitCode(0), 1);
});

t.test('the first failure in the pipe wins the exit code', async (t) => {
  const { pipe, written } = collecting();
  t.equal(pipe.exitCode(0), 0, 'no failure: our own code');
  t.equal(pipe.exitCode(125), 125);
  t.equal(pipe.nothingButUpstreamFailure(), undefined, 'no upstream failure: the tool says its own error');
  await read(
    '{"type":"error","code":"ERR_USAGE","message":"bad flag","exitCode":2,"tool":"img-fetch"}\n{"type":"error","message":"later","exitCode":7}\n',
    pipe,
  );
  t.equal(written.length, 2, 'both are passed on');
  t.equal(pipe.exitCode(0), 2);
  t.equal(pipe.exitCode(125), 2, 'an own failure after an upstream one: the upstream exit code');
  t.match(pipe.nothingButUpstreamFailure(), { code: 'ERR_UPSTREAM_FAILED', exitCode: 2 });
});

t.test('own failures are written for the tools downstream; an upstream-only end is not', async (t) => {
  const { pipe, written } = collecting('img-fetch');
  await pipe.reportOwn(new ConveyorError('ERR_REGISTRY_NOT_FOUND', 'nope: manifest unknown'));
  await pipe.reportOwn(new ConveyorError('ERR_UPSTREAM_FAILED', 'x'));
  t.strictSame(written, [{ type: 'error', v: 1, code: 'ERR_REGISTRY_NOT_FOUND', message: 'nope: manifest unknown', exitCode: 1, tool: 'img-fetch' }]);
});

t.test('on a terminal (no sink) error records are remembered, not written', async (t) => {
  const pipe = new Pipeline();
  pipe.attach({ tool: 'ctr-rm' });
  await read('{"type":"error","message":"x","exitCode":3}\n', pipe);
  await pipe.reportOwn(new ConveyorError('ERR_CONTAINER_NOT_FOUND', 'x'));
  t.equal(pipe.exitCode(0), 3);
});

t.test('waiting on a terminal is said once; on a pipe never', async (t) => {
  const { pipe, hints } = collecting();
  await read('{"type":"a"}\n', pipe);
  t.strictSame(hints, [], 'a pipe');
  const tty = () => Object.assign(Readable.from(['{"type":"a"}\n']), { isTTY: true });
  await read('', pipe, tty());
  await read('', pipe, tty());
  t.strictSame(hints, ['hint'], 'once');
});

t.test('a bad line after an error record is still the reader’s failure', async (t) => {
  const { pipe } = collecting();
  await t.rejects(read('{"type":"error","message":"x"}\n{bad\n', pipe), { code: 'ERR_INPUT_JSON', message: /^stdin:2: / });
});
