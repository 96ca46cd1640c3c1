/**
 * Newline-delimited JSON in and out. One compact object per line; a bad input
 * line is reported as `stdin:N` and never silently dropped; a closed stdout
 * (EPIPE, `| head`) ends output quietly.
 */
import type { Readable } from 'node:stream';
import { ConveyorError } from './errors.js';
import type { TextOutput } from './fd-output.js';
import { type Pipeline, pipeline } from './pipeline.js';

export interface InputLine {
  /** The parsed JSON object, or undefined when the line is not JSON (a bare reference). */
  record?: Record<string, unknown>;
  /** The raw text of the line, trimmed. */
  text: string;
  /** 1-based line number. */
  line: number;
  /** Where the line came from, `stdin` or a file name, for messages like `stdin:3`. */
  source: string;
}

export interface ReadOptions {
  source?: string;
  /** Lines that do not start with `{` are passed as bare text instead of failing (references per line). */
  allowBare?: boolean;
  /** Longest accepted line in bytes; longer lines fail as bad input instead of exhausting memory. */
  maxLineBytes?: number;
  /** Where `error` records go (default: the process's pipeline, which passes them on to stdout); tests give their own. */
  pipeline?: Pipeline;
  /**
   * Yield `error` records (checked, and noted by the pipeline for the exit
   * code) instead of writing them on at once: for a tool that passes records
   * on in input order behind slower work (layer-unpack), so the failure stays
   * in its place.
   */
  yieldErrorRecords?: boolean;
}

/**
 * Reads NDJSON lines. Blank lines are skipped. `error` records (a failure
 * upstream) are not yielded: they go to the pipeline, which passes them on
 * and sets the exit code (lib-common/pipeline), so no tool has to know them.
 * On a terminal, the pipeline first says that records are awaited. Throws
 * ERR_INPUT_JSON naming `source:line` when a line that looks like JSON does
 * not parse or is not an object, or when a bare line arrives and allowBare
 * is false.
 */
export async function* readLines(input: Readable, options: ReadOptions = {}): AsyncGenerator<InputLine> {
  const source = options.source ?? 'stdin';
  const failures = options.pipeline ?? pipeline;
  failures.waitingOn(input);
  const maxLength = options.maxLineBytes ?? 16 * 1024 * 1024;
  // Loaded here, not at start-up: tools that only write records never pay for it.
  const { default: split2 } = await import('split2');
  const lines = input.pipe(split2({ maxLength }));
  let line = 0;
  try {
    for await (const chunk of lines as AsyncIterable<string>) {
      line++;
      if (chunk.length > maxLength) {
        throw new ConveyorError('ERR_INPUT_JSON', `${source}:${line}: line longer than ${maxLength} bytes`, { details: { source, line } });
      }
      const text = chunk.trim();
      if (text === '') continue;
      if (text.startsWith('{') || text.startsWith('[') || !options.allowBare) {
        const record = parseRecord(text, source, line);
        if (record.type !== 'error') yield { record, text, line, source };
        else if (options.yieldErrorRecords) yield { record: failures.noteUpstream(record) as unknown as Record<string, unknown>, text, line, source };
        else await failures.passUpstream(record);
      } else {
        yield { text, line, source };
      }
    }
  } catch (error) {
    if (error instanceof ConveyorError) throw error;
    throw new ConveyorError('ERR_INPUT_JSON', `${source}:${line + 1}: cannot read input: ${(error as Error).message}`, {
      details: { source, line: line + 1 },
    });
  }
}

/**
 * Deepest nesting of arrays and objects a record may have. Ours are a few
 * levels deep; a hostile line of 100000 `[` parses, but every recursive step
 * after it (JSON.stringify when passing it through, a deep copy) overflows the
 * stack, a crash reported as an internal error. Refused at the door instead.
 */
const MAX_RECORD_DEPTH = 512;

/** Whether `text` nests arrays/objects deeper than `max`, counting brackets outside strings. */
function nestedDeeperThan(text: string, max: number): boolean {
  // Fewer characters than the limit cannot nest deeper than it.
  if (text.length <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** One input line (trimmed, not blank) as readLines parses it: ERR_INPUT_JSON naming `source:line` when it is not a JSON object. */
export function parseRecord(text: string, source: string, line: number): Record<string, unknown> {
  if (nestedDeeperThan(text, MAX_RECORD_DEPTH)) {
    throw new ConveyorError('ERR_INPUT_JSON', `${source}:${line}: JSON nested deeper than ${MAX_RECORD_DEPTH} levels`, {
      hint: 'records are flat objects; this line is not one',
      details: { source, line, text: text.slice(0, 200) },
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConveyorError('ERR_INPUT_JSON', `${source}:${line}: not valid JSON: ${(error as Error).message}`, {
      hint: 'each input line must be one JSON object or, where a tool takes references, one bare reference',
      details: { source, line, text: text.slice(0, 200) },
    });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConveyorError('ERR_INPUT_JSON', `${source}:${line}: expected a JSON object`, {
      details: { source, line, text: text.slice(0, 200) },
    });
  }
  return value as Record<string, unknown>;
}

/**
 * Where a tool's library writes its output records: a RecordWriter in a tool,
 * an array in a unit test. The one declaration every tool's library takes.
 */
export interface RecordSink {
  write(record: object): Promise<void>;
}

/**
 * Writes records as NDJSON, honouring backpressure. A closed reader (EPIPE)
 * makes writes no-ops. Its output is a stream, or runCli's FdOutput
 * (fd-output.ts: stdout written without a stream).
 */
export class RecordWriter implements RecordSink {
  private closed = false;
  constructor(private readonly output: TextOutput) {
    output.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED') this.closed = true;
      else throw error;
    });
  }

  /** True once the reader went away; producers can stop early. */
  get isClosed(): boolean {
    return this.closed || this.output.destroyed;
  }

  async write(record: object): Promise<void> {
    if (this.isClosed) return;
    if (!this.output.write(JSON.stringify(record) + '\n')) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.output.off('drain', done);
          this.output.off('close', done);
          this.output.off('error', done);
          resolve();
        };
        this.output.on('drain', done);
        this.output.on('close', done);
        this.output.on('error', done);
      });
    }
  }
}
