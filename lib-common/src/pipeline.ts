/**
 * A tool's place in a pipeline: failures travel down it as `error` records.
 * A failing tool writes one to stdout (when stdout is not a terminal); every
 * tool that reads records passes the ones on its input through, says nothing
 * about them, and ends with the first one's exit code, so
 * `img-fetch nope | layer-unpack | ctr-spawn` exits 1 with one message, from
 * img-fetch. Also the one-line hint when a tool waits for records on a
 * terminal.
 *
 * One Pipeline per process (`pipeline`): runCli attaches stdout and the log,
 * readLines hands it the error records it reads. Error records are hostile
 * input: every field is checked and bounded (checkErrorRecord) and nothing
 * here throws on them. Writing to a closed stdout is the RecordSink's
 * business (a no-op after EPIPE).
 */
import { ConveyorError, EXIT } from './errors.js';
import type { RecordSink } from './ndjson.js';
import { RECORD_VERSION } from './records.js';

/** A failure, as a record: written by the tool that failed, passed through by every tool after it. */
export interface ErrorRecord {
  type: 'error';
  v: number;
  /** The stable error code (`ERR_REGISTRY_NOT_FOUND`). */
  code: string;
  message: string;
  hint?: string;
  /** What the failing tool exited with (1..255); the tools after it end with it too. */
  exitCode: number;
  /** The tool that failed. */
  tool: string;
  /** Where the failure was, when it was one input line (`stdin:3`). */
  where?: string;
}

/** Longest message and hint kept from an error record: enough for any real one, and a forged one cannot flood stderr or memory. */
export const MAX_ERROR_MESSAGE = 2000;
const MAX_ERROR_HINT = 1000;
const ERROR_CODE = /^ERR_[A-Z0-9_]{1,60}$/;
const TOOL_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const WHERE = /^[\x20-\x7e]{1,200}$/;

/** The error record of a tool's own failure. */
export function errorRecordOf(error: ConveyorError, tool: string): ErrorRecord {
  const { source, line } = error.details ?? {};
  const where = typeof source === 'string' && Number.isSafeInteger(line) ? `${source}:${line}` : undefined;
  return checkErrorRecord({
    type: 'error',
    v: RECORD_VERSION,
    code: error.code,
    message: error.message,
    hint: error.hint,
    exitCode: error.exitCode,
    tool,
    where,
  });
}

/** An exit code an error record may carry: an integer 1..255; anything else (0, -3, 1e9, "2", NaN) is 1. */
export function errorExitCode(value: unknown): number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= 255 ? (value as number) : EXIT.FAILED;
}

/**
 * An `error` record as it is passed on: the documented fields only, each
 * checked and bounded. A field that is not what it should be gets a neutral
 * value (code ERR_INTERNAL, tool `unknown`, exit code 1) instead of failing
 * the run: the record already says the pipeline failed.
 */
export function checkErrorRecord(record: Record<string, unknown>): ErrorRecord {
  const text = (value: unknown, max: number) =>
    typeof value === 'string' && value !== '' ? (value.length > max ? `${value.slice(0, max)}...` : value) : undefined;
  const checked: ErrorRecord = {
    type: 'error',
    v: RECORD_VERSION,
    code: typeof record.code === 'string' && ERROR_CODE.test(record.code) ? record.code : 'ERR_INTERNAL',
    message: text(record.message, MAX_ERROR_MESSAGE) ?? 'failed (the error record carried no message)',
    exitCode: errorExitCode(record.exitCode),
    tool: typeof record.tool === 'string' && TOOL_NAME.test(record.tool) ? record.tool : 'unknown',
  };
  const hint = text(record.hint, MAX_ERROR_HINT);
  if (hint !== undefined) checked.hint = hint;
  if (typeof record.where === 'string' && WHERE.test(record.where)) checked.where = record.where;
  return checked;
}

export interface PipelineAttachment {
  /** This tool's name, for its own error records. */
  tool: string;
  /** stdout when it is not a terminal; undefined on a terminal (error records are for programs, stderr already told the human). */
  sink?: RecordSink;
  /** Says once that the tool waits for records on a terminal. */
  onTerminalInput?: () => void;
}

export class Pipeline {
  private attachment: PipelineAttachment = { tool: 'conveyor' };
  private upstream?: ErrorRecord;
  private hinted = false;

  /** Called by runCli once the tool's stdout and log are known. */
  attach(attachment: PipelineAttachment): void {
    this.attachment = attachment;
  }

  /** The first error record read from upstream, if any. */
  get upstreamFailure(): ErrorRecord | undefined {
    return this.upstream;
  }

  /** An error record read on input: checked, remembered when it is the first, and written on unchanged (in its checked form). */
  async passUpstream(record: Record<string, unknown>): Promise<void> {
    // Noted first: with no sink (a terminal), `sink?.write(...)` would skip its argument.
    const checked = this.noteUpstream(record);
    await this.attachment.sink?.write(checked);
  }

  /** An error record read on input, checked and remembered, for a tool that writes it on in its place in its own output order. */
  noteUpstream(record: Record<string, unknown>): ErrorRecord {
    const checked = checkErrorRecord(record);
    this.upstream ??= checked;
    return checked;
  }

  /**
   * This tool's own failure, as a record for the tools after it (the message
   * on stderr is the caller's). Per-item failures (one reference of several)
   * are reported here as they happen; runCli reports the one that ends a run.
   */
  async reportOwn(error: ConveyorError): Promise<void> {
    if (error.code === 'ERR_UPSTREAM_FAILED') return;
    await this.attachment.sink?.write(errorRecordOf(error, this.attachment.tool));
  }

  /** The exit code to end with: the first upstream failure's (the first failure in the pipe wins), else `own`. */
  exitCode(own: number): number {
    return this.upstream ? this.upstream.exitCode : own;
  }

  /**
   * What a tool that found nothing to do throws when its input held only an
   * upstream failure: runCli ends with that failure's exit code and prints
   * nothing more. Undefined when there was no upstream failure (the tool
   * reports its own "no record" error then).
   */
  nothingButUpstreamFailure(): ConveyorError | undefined {
    if (!this.upstream) return undefined;
    return new ConveyorError('ERR_UPSTREAM_FAILED', `${this.upstream.tool} failed upstream: ${this.upstream.message}`, { exitCode: this.upstream.exitCode });
  }

  /** readLines is about to wait on `input`: a terminal gets the hint, once per process. */
  waitingOn(input: unknown): void {
    if (this.hinted || !(input as { isTTY?: boolean } | undefined)?.isTTY) return;
    this.hinted = true;
    this.attachment.onTerminalInput?.();
  }
}

/** The process's pipeline: attached by runCli, fed by readLines. */
export const pipeline = new Pipeline();
