/**
 * fd-output: stdout and stderr written without a stream. Which descriptors
 * count as plain (no terminal), order kept when the stream is asked for or a
 * non-blocking pipe is full (EAGAIN), EPIPE reported as a stream reports it.
 */
import t from 'tap';
import type tap from 'tap';
import { closeSync, constants, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { FdOutput, isPlainFd, stdOutput, streamOf } from '../src/fd-output.js';

/** A stand-in for process.stdout that keeps what it was given. */
function collectingStream() {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  return { stream: stream as unknown as NodeJS.WriteStream, text: () => Buffer.concat(chunks).toString() };
}

const never = (): NodeJS.WriteStream => {
  throw new Error('the stream was made');
};

function fifo(t: typeof tap): string {
  const path = join(t.testdir(), 'fifo');
  t.equal(spawnSync('mkfifo', [path]).status, 0, 'mkfifo');
  return path;
}

/** A FIFO's write end whose reader has come and gone: a write fails with EPIPE. */
function readerGoneFifo(t: typeof tap): number {
  const path = fifo(t);
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(path, constants.O_WRONLY);
  t.teardown(() => closeSync(writer));
  closeSync(reader);
  return writer;
}

// [what, open it, plain]
const cases: [string, (dir: string) => number, boolean][] = [
  ['a regular file', (dir) => openSync(join(dir, 'file'), 'w'), true],
  ['/dev/null', () => openSync('/dev/null', 'w'), true],
  ['/dev/zero', () => openSync('/dev/zero', 'r'), true],
  ['a pseudo-terminal master (/dev/ptmx)', () => openSync('/dev/ptmx', constants.O_RDWR | constants.O_NOCTTY), false],
  ['a directory', (dir) => openSync(dir, 'r'), false],
];
for (const [what, open, plain] of cases) {
  t.test(`isPlainFd: ${what} is ${plain ? '' : 'not '}plain`, async (t) => {
    const fd = open(t.testdir());
    t.teardown(() => closeSync(fd));
    t.equal(isPlainFd(fd), plain);
  });
}

t.test('isPlainFd: a closed descriptor is not plain (the stream decides)', async (t) => {
  const fd = openSync('/dev/null', 'w');
  closeSync(fd);
  t.equal(isPlainFd(fd), false);
});

t.test('writes go to the descriptor at once; once the stream is asked for, through it, in order', async (t) => {
  const file = join(t.testdir(), 'out');
  const fd = openSync(file, 'w');
  t.teardown(() => closeSync(fd));
  const collected = collectingStream();
  let made = 0;
  const output = new FdOutput(fd, () => {
    made++;
    return collected.stream;
  });
  const errors: unknown[] = [];
  output.on('error', (error: unknown) => errors.push(error));
  t.equal(output.write('{"a":1}\n'), true);
  t.equal(output.write(Buffer.from('é\n')), true, 'bytes as well as text');
  t.equal(readFileSync(file, 'utf8'), '{"a":1}\né\n', 'written before write returned');
  t.equal(made, 0, 'no stream made');
  t.equal(output.isTTY, false);
  t.equal(output.stream, collected.stream, 'the stream, when asked for');
  t.equal(streamOf(output), collected.stream);
  output.write('later\n');
  t.equal(made, 1, 'made once');
  t.equal(readFileSync(file, 'utf8'), '{"a":1}\né\n', 'later writes do not overtake the stream');
  t.equal(collected.text(), 'later\n');
  collected.stream.emit('error', new Error('boom'));
  t.equal(errors.length, 1, 'listeners added before the stream was made are its listeners');
});

t.test('a full non-blocking pipe (EAGAIN): the rest and every later write go to the stream, nothing lost or reordered', async (t) => {
  const path = fifo(t);
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const writer = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  t.teardown(() => {
    closeSync(writer);
    closeSync(reader);
  });
  const collected = collectingStream();
  const output = new FdOutput(writer, () => collected.stream);
  const big = 'x'.repeat(300_000);
  output.write(big);
  output.write('tail\n');
  const piped: Buffer[] = [];
  const buffer = Buffer.alloc(65536);
  for (;;) {
    try {
      const n = readSync(reader, buffer);
      if (n === 0) break;
      piped.push(Buffer.from(buffer.subarray(0, n)));
    } catch {
      break;
    }
  }
  const inPipe = Buffer.concat(piped).toString();
  t.ok(inPipe.length > 0 && inPipe.length < big.length, 'the pipe took what fitted');
  t.equal(inPipe + collected.text(), `${big}tail\n`, 'the stream got the rest, then the later write');
});

t.test('a reader gone (EPIPE): reported to the error listeners later, as a stream does; later writes dropped', async (t) => {
  const output = new FdOutput(readerGoneFifo(t), never);
  const errors: NodeJS.ErrnoException[] = [];
  output.on('error', (error: NodeJS.ErrnoException) => errors.push(error));
  t.equal(output.write('{"a":1}\n'), true);
  t.equal(errors.length, 0, 'not during the write');
  t.equal(output.destroyed, true, 'closed at once');
  output.write('more\n');
  await new Promise((resolve) => setImmediate(resolve));
  t.strictSame(
    errors.map((e) => e.code),
    ['EPIPE'],
    'one EPIPE',
  );
});

t.test('a listener removed is not called', async (t) => {
  const output = new FdOutput(readerGoneFifo(t), never);
  let called = 0;
  const listener = () => called++;
  output.on('error', listener);
  output.off('error', listener);
  output.write('x\n');
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(called, 0);
});

t.test('stdOutput: an FdOutput for a plain descriptor, the stream itself for anything else', async (t) => {
  const fd = openSync('/dev/null', 'w');
  t.teardown(() => closeSync(fd));
  t.ok(stdOutput(fd, never) instanceof FdOutput);
  const dir = openSync(t.testdir(), 'r');
  t.teardown(() => closeSync(dir));
  const collected = collectingStream();
  t.equal(
    stdOutput(dir, () => collected.stream),
    collected.stream,
  );
  t.equal(streamOf(collected.stream), collected.stream);
});
