/**
 * layer-unpack's input lines (issue 17): the lines readLines gives (blank
 * ones skipped, `error` records yielded in their place, the same `stdin:N`
 * errors), read without a stream where that is safe.
 *
 * While the unpacker is idle (nothing started by earlier lines is pending:
 * `idle`), a pipe, socket or file on `fd` is read with readSync: a warm run
 * then neither makes process.stdin (node:net, a pipe handle) nor loads
 * split2, and the records are taken the moment they arrive. A blocking read
 * stops the event loop, so it is made only then; once work is pending (a
 * layer unpacking while later records stream in) the rest is read through
 * `stream()`, from where the synchronous reads left off. A terminal, or a
 * descriptor that would block (O_NONBLOCK: EAGAIN), is read through the
 * stream from the start.
 *
 * Failure: ERR_INPUT_JSON naming `source:N` for a line that is not a JSON
 * object or is longer than the limit, and for a read that fails.
 */
import { fstatSync, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { LineCutter } from '@conveyor/lib-common/line-cutter';
import { type InputLine, parseRecord, readLines } from '@conveyor/lib-common/ndjson';
import { type Pipeline, pipeline } from '@conveyor/lib-common/pipeline';

export interface InputOptions {
  /** The descriptor to read (0). */
  fd: number;
  /** The same input as a stream, made only when needed (process.stdin: a getter). */
  stream: () => Readable;
  /** True when nothing is pending: a blocking read would hold nothing up. Asked after the event loop has turned. */
  idle: () => boolean;
  source?: string;
  /** Longest accepted line in bytes (default 16 MiB, as readLines). */
  maxLineBytes?: number;
  /** Where `error` records are noted (default: the process's pipeline). */
  pipeline?: Pick<Pipeline, 'noteUpstream' | 'waitingOn'>;
  /** Bytes per read (default 64 KiB; tests make it small). */
  chunkBytes?: number;
}

/** Whether a blocking read of `fd` waits only for its producer: a pipe, a socket or a file (not a terminal). */
function readableAtOnce(fd: number): boolean {
  try {
    const info = fstatSync(fd);
    return info.isFIFO() || info.isSocket() || info.isFile();
  } catch {
    return false;
  }
}

/** The next turn of the event loop: what earlier lines started has run as far as it can without waiting. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Reads input lines as described above; `error` records are noted with the pipeline and yielded in their place. */
export async function* inputLines(options: InputOptions): AsyncGenerator<InputLine> {
  const source = options.source ?? 'stdin';
  const failures = options.pipeline ?? pipeline;
  if (!readableAtOnce(options.fd)) {
    yield* readLines(options.stream(), { source, maxLineBytes: options.maxLineBytes, yieldErrorRecords: true, pipeline: failures as Pipeline });
    return;
  }
  const lines = new LineCutter(source, options.maxLineBytes ?? 16 * 1024 * 1024);
  const record = (bytes: Buffer): InputLine | undefined => {
    const trimmed = bytes.toString('utf8').trim();
    if (trimmed === '') return undefined;
    const parsed = parseRecord(trimmed, source, lines.count);
    return {
      record: parsed.type === 'error' ? (failures.noteUpstream(parsed) as unknown as Record<string, unknown>) : parsed,
      text: trimmed,
      line: lines.count,
      source,
    };
  };
  const readFailed = (error: unknown) =>
    new ConveyorError('ERR_INPUT_JSON', `${source}:${lines.count + 1}: cannot read input: ${(error as Error).message}`, {
      details: { source, line: lines.count + 1 },
    });

  const chunk = Buffer.allocUnsafe(options.chunkBytes ?? 64 * 1024);
  for (;;) {
    await nextTurn();
    if (!options.idle()) break;
    let read: number;
    try {
      read = readSync(options.fd, chunk, 0, chunk.length, null);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw readFailed(error);
    }
    if (read === 0) {
      for (const bytes of lines.rest()) {
        const line = record(bytes);
        if (line) yield line;
      }
      return;
    }
    for (const bytes of lines.cut(chunk.subarray(0, read))) {
      const line = record(bytes);
      if (line) yield line;
    }
  }

  // Work is pending: the rest through the stream, which the event loop serves.
  const stream = options.stream();
  failures.waitingOn(stream);
  try {
    for await (const data of stream as AsyncIterable<Buffer | string>) {
      for (const bytes of lines.cut(typeof data === 'string' ? Buffer.from(data) : data)) {
        const line = record(bytes);
        if (line) yield line;
      }
    }
  } catch (error) {
    if (error instanceof ConveyorError) throw error;
    throw readFailed(error);
  }
  for (const bytes of lines.rest()) {
    const line = record(bytes);
    if (line) yield line;
  }
}
