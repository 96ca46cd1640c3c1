/**
 * Bytes cut into input lines, numbered as readLines numbers them, for the
 * readers that take their input without a line-splitting stream (issue 17:
 * layer-unpack's input.ts, ctr-spawn's record.ts): split at each newline, a
 * partial last line held (copied) until the next chunk or `rest()`, lines
 * numbered from 1 in `count`.
 *
 * Failure: ERR_INPUT_JSON naming `source:N` for a line longer than `maxBytes`,
 * thrown as soon as the part held is longer, so that a line without an end
 * cannot exhaust memory.
 */
import { ConveyorError } from './errors.js';

const NEWLINE = 0x0a;

export class LineCutter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** The number of the last line cut (0 before the first). */
  count = 0;

  constructor(
    readonly source: string,
    private readonly maxBytes: number,
  ) {}

  /**
   * The complete lines in `chunk`, without their newline; `count` is each one's number when it is
   * yielded. A line may be a view of `chunk`: decode it before the chunk is read into again.
   */
  *cut(chunk: Buffer): Generator<Buffer> {
    let start = 0;
    for (let end = chunk.indexOf(NEWLINE); end !== -1; end = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, end);
      start = end + 1;
      const bytes = this.pendingBytes === 0 ? piece : Buffer.concat([...this.pending, piece]);
      this.pending = [];
      this.pendingBytes = 0;
      yield this.take(bytes);
    }
    if (start < chunk.length) {
      this.pending.push(Buffer.from(chunk.subarray(start)));
      this.pendingBytes += chunk.length - start;
      if (this.pendingBytes > this.maxBytes) throw this.tooLong(this.count + 1);
    }
  }

  /** The last line, when the input ended without a newline. */
  *rest(): Generator<Buffer> {
    const held = this.pendingBytes > 0 ? Buffer.concat(this.pending) : undefined;
    this.pending = [];
    this.pendingBytes = 0;
    if (held) yield this.take(held);
  }

  private take(bytes: Buffer): Buffer {
    this.count++;
    if (bytes.length > this.maxBytes) throw this.tooLong(this.count);
    return bytes;
  }

  private tooLong(line: number): ConveyorError {
    const source = this.source;
    return new ConveyorError('ERR_INPUT_JSON', `${source}:${line}: line longer than ${this.maxBytes} bytes`, { details: { source, line } });
  }
}
