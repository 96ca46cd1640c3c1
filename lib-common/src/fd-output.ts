/**
 * stdout and stderr written without a stream (issue 17). process.stdout and
 * process.stderr are streams made on first use: on a pipe or socket a
 * net.Socket, which loads node:net, node:stream and their bindings, about
 * 5-7 ms of CPU in every tool of a pipeline that writes a record or a log
 * line. runCli writes records and log lines to a pipe, socket, file or
 * /dev/null with fs.writeSync instead; a terminal or any other device keeps
 * the process's stream. Node's stream writes a file synchronously too, and a
 * pipe at once as far as it has room; past that it queues, and RecordWriter
 * waited for 'drain' anyway: here a full pipe blocks the write until its
 * reader takes more (records and log lines are small; a reader that stops
 * reading stalls its writer either way). A tool that asks for the
 * stream (to pipe a tar, a container's logs) gets it, made then, and every
 * later write goes through it, after what was written before.
 *
 * Failure: a descriptor left non-blocking by whoever started us (EAGAIN), or
 * any other error but EPIPE, hands the unwritten rest and every later write
 * to the stream, in order, which reports errors its own way; a closed reader
 * (EPIPE) is reported to the 'error' listeners on a later turn of the event loop, as a stream
 * reports it, and later writes are dropped.
 */
import { fstatSync, writeSync } from 'node:fs';

/** Linux's major device number of /dev/null, /dev/zero and /dev/full: character devices that are no terminal. */
const MEMORY_DEVICES_MAJOR = 1;

/**
 * Whether `fd` is a pipe, socket, regular file or memory device (/dev/null):
 * certainly no terminal, and written at once by writeSync. A terminal, any
 * other device or an fstat that fails: false (the stream decides; node:tty's
 * isatty would load node:net itself).
 */
export function isPlainFd(fd: number): boolean {
  try {
    const stat = fstatSync(fd);
    if (stat.isFIFO() || stat.isSocket() || stat.isFile()) return true;
    // Linux's old encoding of (major, minor < 256): major * 256 + minor.
    return stat.isCharacterDevice() && Math.floor(stat.rdev / 256) === MEMORY_DEVICES_MAJOR;
  } catch {
    return false;
  }
}

// biome-ignore lint/suspicious/noExplicitAny: a stream listener's type (node:events)
type Listener = (...args: any[]) => void;

/** The part of a writable stream runCli's logger, progress and RecordWriter use: a stream, or an FdOutput. */
export interface TextOutput {
  write(chunk: string | Uint8Array): boolean;
  on(event: string, listener: Listener): unknown;
  off(event: string, listener: Listener): unknown;
  readonly destroyed: boolean;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** One of fd 1 and 2, written with writeSync until its stream is asked for (or a write needs it). */
export class FdOutput implements TextOutput {
  private made?: NodeJS.WriteStream;
  private closed = false;
  /** Listeners added before the stream exists: handed to it when it is made. */
  private readonly listeners: Array<[string, Listener]> = [];
  /** Never a terminal: isPlainFd chose this over the stream. */
  readonly isTTY = false;
  readonly columns = undefined;

  constructor(
    readonly fd: number,
    private readonly makeStream: () => NodeJS.WriteStream,
  ) {}

  /** The process's stream for this descriptor, made now if it was not: from here on every write goes through it. */
  get stream(): NodeJS.WriteStream {
    if (this.made === undefined) {
      this.made = this.makeStream();
      for (const [event, listener] of this.listeners) this.made.on(event, listener);
    }
    return this.made;
  }

  /** True once the reader went away (or the stream was destroyed). */
  get destroyed(): boolean {
    return this.closed || (this.made?.destroyed ?? false);
  }

  write(chunk: string | Uint8Array): boolean {
    if (this.made !== undefined) return this.made.write(chunk);
    if (this.closed) return true;
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let written = 0;
    try {
      // A pipe takes what fits; a blocking one waits for the rest, as Node's stream would.
      while (written < bytes.length) {
        const wrote = writeSync(this.fd, bytes, written);
        if (wrote === 0) break;
        written += wrote;
      }
      if (written === bytes.length) return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EPIPE') {
        this.closed = true;
        setImmediate(() => this.emit('error', error));
        return true;
      }
    }
    return this.stream.write(bytes.subarray(written));
  }

  on(event: string, listener: Listener): this {
    this.listeners.push([event, listener]);
    this.made?.on(event, listener);
    return this;
  }

  off(event: string, listener: Listener): this {
    const at = this.listeners.findIndex(([e, l]) => e === event && l === listener);
    if (at >= 0) this.listeners.splice(at, 1);
    this.made?.off(event, listener);
    return this;
  }

  /** As a stream emits: to the listeners of `event`, once the stream exists its own. */
  private emit(event: string, value: unknown): void {
    if (this.made !== undefined) {
      this.made.emit(event, value);
      return;
    }
    for (const [e, listener] of [...this.listeners]) if (e === event) listener(value);
  }
}

/** stdout or stderr as runCli writes it: an FdOutput when `fd` is plain (isPlainFd), else the stream itself. */
export function stdOutput(fd: number, makeStream: () => NodeJS.WriteStream): FdOutput | NodeJS.WriteStream {
  return isPlainFd(fd) ? new FdOutput(fd, makeStream) : makeStream();
}

/** The stream behind an output of stdOutput (made now when it was not). */
export function streamOf(output: FdOutput | NodeJS.WriteStream): NodeJS.WriteStream {
  return output instanceof FdOutput ? output.stream : output;
}
