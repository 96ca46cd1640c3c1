/**
 * layer-unpack's input reader (src/input.ts): the lines readLines gives, read
 * with readSync while the unpacker is idle, through the stream once it is not
 * (from where the reads left off), and through the stream from the start when
 * the descriptor would block (EAGAIN). Real descriptors: a file and a FIFO.
 */
import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, writeFileSync, writeSync, constants as fsConstants } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runProcess } from '@conveyor/lib-common/subprocess';
import { type InputLine, readLines } from '@conveyor/lib-common/ndjson';
import { Pipeline } from '@conveyor/lib-common/pipeline';
import { inputLines } from '../src/input.js';

const dir = mkdtempSync(join(tmpdir(), 'input-test-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** A file holding `text`, opened for reading. */
function fileFd(t: { teardown(fn: () => void): void }, text: string): number {
  const path = join(dir, `in-${files++}`);
  writeFileSync(path, text);
  const fd = openSync(path, 'r');
  t.teardown(() => closeSync(fd));
  return fd;
}

async function collect(lines: AsyncIterable<InputLine>): Promise<InputLine[]> {
  const all: InputLine[] = [];
  for await (const line of lines) all.push(line);
  return all;
}

const layer = (i: number) => JSON.stringify({ type: 'layer', v: 1, index: i });
const errorRecord = JSON.stringify({ type: 'error', v: 1, code: 'ERR_NETWORK', message: 'upstream broke', tool: 'img-fetch', exitCode: 1 });

const SAME_AS_READLINES: [string, string][] = [
  ['one line with its newline', `${layer(0)}\n`],
  ['the last line without a newline', `${layer(0)}\n${layer(1)}`],
  ['blank lines and spaces skipped, counted', `\n${layer(0)}\n   \n\n${layer(1)}\n`],
  ['CRLF line ends', `${layer(0)}\r\n${layer(1)}\r\n`],
  ['lines longer than a read (7 bytes)', `${layer(0)}\n${layer(1)}\n${layer(2)}\n`],
  ['an error record in its place', `${layer(0)}\n${errorRecord}\n${layer(1)}\n`],
  ['multi-byte characters across reads', `${JSON.stringify({ type: 'image', ref: 'é'.repeat(20) + '日本語'.repeat(5) })}\n`],
  ['empty input', ''],
];

t.test('the same lines as readLines, read 7 bytes at a time', async (t) => {
  for (const [name, text] of SAME_AS_READLINES) {
    const failures = new Pipeline();
    let streams = 0;
    const got = await collect(
      inputLines({
        fd: fileFd(t, text),
        stream: () => {
          streams++;
          throw new Error('not idle? the stream was asked for');
        },
        idle: () => true,
        chunkBytes: 7,
        pipeline: failures,
      }),
    );
    const path = join(dir, `expected-${files++}`);
    writeFileSync(path, text);
    const expected = await collect(readLines(createReadStream(path), { yieldErrorRecords: true, pipeline: new Pipeline() }));
    t.same(got, expected, name);
    t.equal(streams, 0, `${name}: no stream made`);
  }
});

t.test('an error record is noted with the pipeline', async (t) => {
  const failures = new Pipeline();
  const got = await collect(
    inputLines({ fd: fileFd(t, `${errorRecord}\n`), stream: () => t.fail('no stream') as never, idle: () => true, pipeline: failures }),
  );
  t.equal(got.length, 1);
  t.match(got[0].record, { type: 'error', code: 'ERR_NETWORK' });
  t.equal(failures.exitCode(0), 1, 'the upstream failure sets the exit code');
});

/** Lines longer than 64 bytes are refused here; the deep one is under 2000. */
const BAD: [string, string, RegExp, number?][] = [
  ['not JSON on line 3', `${layer(0)}\n\n{"type":\n`, /^stdin:3: not valid JSON/],
  ['a JSON array', `[1,2]\n`, /^stdin:1: expected a JSON object/],
  ['too deep', `${'['.repeat(600)}${']'.repeat(600)}\n`, /^stdin:1: JSON nested deeper than 512/, 2000],
  ['a long line ended', `${layer(0)}\n{"x":"${'a'.repeat(100)}"}\n`, /^stdin:2: line longer than 64 bytes/],
  ['a long line not ended', `${layer(0)}\n{"x":"${'a'.repeat(100)}`, /^stdin:2: line longer than 64 bytes/],
];

t.test('bad input is ERR_INPUT_JSON naming its line', async (t) => {
  for (const [name, text, message, maxLineBytes = 64] of BAD) {
    const lines = inputLines({
      fd: fileFd(t, text),
      stream: () => t.fail('no stream') as never,
      idle: () => true,
      maxLineBytes,
      chunkBytes: 16,
      pipeline: new Pipeline(),
    });
    await t.rejects(collect(lines), { code: 'ERR_INPUT_JSON', message }, name);
  }
});

t.test('once work is pending, the rest comes through the stream, from where the reads left off', async (t) => {
  const text = `${layer(0)}\n\n${layer(1)}\n${layer(2)}\n${layer(3)}`;
  const fd = fileFd(t, text);
  let idle = true;
  let streams = 0;
  const got: InputLine[] = [];
  for await (const line of inputLines({
    fd,
    // From the descriptor's offset: what readSync took is not read again.
    stream: () => {
      streams++;
      return createReadStream('', { fd, autoClose: false, highWaterMark: 5 });
    },
    idle: () => idle,
    chunkBytes: layer(0).length + 4,
    pipeline: new Pipeline(),
  })) {
    got.push(line);
    idle = false;
  }
  t.same(
    got.map((l) => [l.line, l.record?.index]),
    [
      [1, 0],
      [3, 1],
      [4, 2],
      [5, 3],
    ],
  );
  t.equal(streams, 1, 'the stream made once');
});

t.test('a descriptor that would block (O_NONBLOCK) is read through the stream', async (t) => {
  const fifo = join(dir, 'fifo');
  await runProcess('mkfifo', [fifo]);
  const reader = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  const writer = openSync(fifo, fsConstants.O_WRONLY);
  writeSync(writer, `${layer(0)}\n${layer(1).slice(0, 10)}`);
  let stream: Socket | undefined;
  const got: InputLine[] = [];
  const lines = inputLines({
    fd: reader,
    stream: () => {
      stream = new Socket({ fd: reader, readable: true, writable: false });
      return stream;
    },
    idle: () => true,
    pipeline: new Pipeline(),
  });
  for await (const line of lines) {
    got.push(line);
    // The first line came from readSync; the next read finds nothing yet (EAGAIN) and goes to the stream.
    if (got.length === 1) {
      setTimeout(() => {
        writeSync(writer, `${layer(1).slice(10)}\n${layer(2)}\n`);
        closeSync(writer);
      }, 50);
    }
  }
  stream?.destroy();
  t.same(
    got.map((l) => [l.line, l.record?.index]),
    [
      [1, 0],
      [2, 1],
      [3, 2],
    ],
  );
  t.ok(stream, 'the stream was made');
});
