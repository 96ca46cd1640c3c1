/**
 * The one way conveyor runs another program (mount, umount, the OCI runtime,
 * credential helpers, zstd, mknod batches). The result follows execa's
 * contract — `failed`, `exitCode`, `signal`, `code` (errno when it could not
 * be started), `stdout`, `stderr`, `shortMessage` — and the promise never
 * rejects: each caller maps a failure to the ConveyorError code of its area
 * (a missing runtime is not a failed mount).
 *
 * Why not execa itself: importing execa 9 costs about 0.1–0.2 s of start-up
 * (`node -e 'await import("execa")'`), and mount, runc and umount sit on
 * ctr-spawn's warm-run path, which takes about 0.17 s in all. This module
 * keeps execa's result shape on node:child_process, so callers read like
 * execa callers and could move to it unchanged.
 *
 * Library code: no `process.*` (the child's environment is ours unless `env`
 * is given, as node:child_process does).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import type { Readable, Writable } from 'node:stream';

/** Where a standard stream of the child goes: a pipe to us, nowhere, ours, or an open fd. */
export type StdioSlot = 'pipe' | 'ignore' | 'inherit' | number;

export interface SubprocessOptions {
  cwd?: string;
  /** The child's whole environment (not merged with ours); default ours. */
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed (stdin becomes a pipe). */
  input?: string;
  /** Default 'ignore' ('pipe' with `input`). */
  stdin?: StdioSlot;
  /** Default 'pipe': collected into the result. */
  stdout?: StdioSlot;
  /** Default 'pipe': collected into the result. */
  stderr?: StdioSlot;
  /**
   * Collect piped stdout/stderr into the result (default true). False leaves
   * the streams to the caller (`process.stdout`), e.g. to stream a decompressor.
   */
  buffer?: boolean;
  /** Characters kept of each collected stream (default 100 MB); the rest is read and dropped. */
  maxBuffer?: number;
  /** Its own session and process group (setsid): terminal signals do not reach it. */
  detached?: boolean;
  /** Called once the program is running, before it can have exited. */
  onSpawn?: (child: Subprocess) => void;
  /** Fds 3, 4, ... of the child (e.g. a pipe slirp4netns writes to when it is ready); see Subprocess.extra. */
  extraStdio?: StdioSlot[];
}

export interface SubprocessResult {
  /** The command line, for messages. */
  command: string;
  /** It could not be started, exited non-zero, or was killed by a signal. */
  failed: boolean;
  /** Its exit code; undefined when it was killed by a signal or never started. */
  exitCode?: number;
  /** The signal that ended it. */
  signal?: NodeJS.Signals;
  /** Node's error code when it could not be started: ENOENT (not found), EACCES, ... */
  code?: string;
  /** Collected output ('' when not piped), final newline stripped as execa does. */
  stdout: string;
  stderr: string;
  /** One line saying what went wrong ('' when it succeeded), as execa's. */
  shortMessage: string;
  /** Node's own message when it could not be started (`spawn runc ENOENT`), as execa's. */
  originalMessage?: string;
}

/** A started program: signal it, watch it, and await its result. */
export interface Subprocess {
  readonly pid: number | undefined;
  /** Null while it runs. */
  readonly exitCode: number | null;
  /** The child's stdin/stdout/stderr when they are pipes. */
  readonly stdin: Writable | null;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
  /** The child's fds 3, 4, ... given as 'pipe' in extraStdio (null for the others). */
  readonly extra: (Readable | null)[];
  /** Sends `signal` (default SIGTERM); false when it could not be delivered. */
  kill(signal?: NodeJS.Signals): boolean;
  /** Lets us exit while it runs (a detached program that outlives us: ctr-spawn's supervisor). */
  unref(): void;
  /** Settles when the program has ended and its pipes are drained; never rejects. */
  readonly result: Promise<SubprocessResult>;
}

const DEFAULT_MAX_BUFFER = 100_000_000;

/** Starts `file` with `args` (no shell). Errors, including "not found", arrive in `result`. */
export function startProcess(file: string, args: string[], options: SubprocessOptions = {}): Subprocess {
  const command = [file, ...args].join(' ');
  const stdin = options.input !== undefined ? 'pipe' : (options.stdin ?? 'ignore');
  const child: ChildProcess = spawn(file, args, {
    cwd: options.cwd,
    env: options.env,
    detached: options.detached ?? false,
    stdio: [stdin, options.stdout ?? 'pipe', options.stderr ?? 'pipe', ...(options.extraStdio ?? [])],
  });
  const buffer = options.buffer ?? true;
  const max = options.maxBuffer ?? DEFAULT_MAX_BUFFER;
  const collected = { stdout: '', stderr: '' };
  if (buffer) {
    for (const name of ['stdout', 'stderr'] as const) {
      const stream = child[name];
      if (!stream) continue;
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        if (collected[name].length < max) collected[name] += chunk.slice(0, max - collected[name].length);
      });
    }
  }
  if (child.stdin) {
    // A program that exits without reading its input must not crash us with EPIPE.
    child.stdin.on('error', () => undefined);
    if (options.input !== undefined) child.stdin.end(options.input);
  }
  const handle: Subprocess = {
    get pid() {
      return child.pid;
    },
    get exitCode() {
      return child.exitCode;
    },
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    extra: (options.extraStdio ?? []).map((_, i) => (child.stdio[3 + i] as Readable | null) ?? null),
    kill: (signal) => {
      try {
        return child.kill(signal);
      } catch {
        // already gone
        return false;
      }
    },
    unref: () => child.unref(),
    result: new Promise<SubprocessResult>((resolve) => {
      let settled = false;
      const settle = (result: Omit<SubprocessResult, 'command' | 'stdout' | 'stderr'>) => {
        if (settled) return;
        settled = true;
        resolve({ command, stdout: stripFinalNewline(collected.stdout), stderr: stripFinalNewline(collected.stderr), ...result });
      };
      child.on('error', (error: NodeJS.ErrnoException) => {
        // Not started (ENOENT, EACCES), or a failed kill of one that is: only the first counts.
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) return;
        const code = error.code ?? 'ERROR';
        settle({ failed: true, code, shortMessage: `Command failed with ${code}: ${command}\n${error.message}`, originalMessage: error.message });
      });
      child.on('close', (exitCode, signal) => {
        if (signal) {
          const number = osConstants.signals[signal] ?? 0;
          settle({ failed: true, signal, shortMessage: `Command was killed with ${signal} (signal ${number}): ${command}` });
        } else {
          const code = exitCode ?? 1;
          settle({ failed: code !== 0, exitCode: code, shortMessage: code === 0 ? '' : `Command failed with exit code ${code}: ${command}` });
        }
      });
    }),
  };
  if (options.onSpawn) child.once('spawn', () => options.onSpawn!(handle));
  return handle;
}

/** Runs `file` with `args` to the end; see startProcess. */
export function runProcess(file: string, args: string[], options: SubprocessOptions = {}): Promise<SubprocessResult> {
  return startProcess(file, args, options).result;
}

function stripFinalNewline(text: string): string {
  return text.endsWith('\n') ? text.slice(0, text.endsWith('\r\n') ? -2 : -1) : text;
}
