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
 * A program whose standard streams are all fds or nothing (the OCI runtime's
 * `run`, whose stdio are ours: ctr-spawn's one start on its warm path) is
 * started on Node's process handle itself (startDirect), which
 * node:child_process wraps: loading node:child_process (with node:dgram and
 * its socket plumbing) costs about 3 ms of a run that needs none of it
 * (issue 17). The handle is process.binding('process_wrap')'s, a binding
 * Node lists as deprecated (DEP0111, a warning only under
 * --pending-deprecation) but keeps; where it is missing, and for every
 * program with a pipe, node:child_process is loaded on first use.
 *
 * Library code: no `process.*` but those two loads (the child's environment
 * is ours unless `env` is given, as node:child_process does).
 */
import type { ChildProcess } from 'node:child_process';
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

/** What ended a program, without the command and its output: both ways of starting one settle with it. */
type Ending = Omit<SubprocessResult, 'command' | 'stdout' | 'stderr'>;

/** A started program's end: its exit code, or the signal that killed it, with execa's message. */
function ended(command: string, exitCode: number, signal: NodeJS.Signals | null | undefined): Ending {
  if (signal) return { failed: true, signal, shortMessage: `Command was killed with ${signal} (signal ${osConstants.signals[signal] ?? 0}): ${command}` };
  return { failed: exitCode !== 0, exitCode, shortMessage: exitCode === 0 ? '' : `Command failed with exit code ${exitCode}: ${command}` };
}

/** A program that could not be started (`code`: ENOENT, EACCES, ...), with Node's own message. */
function notStarted(command: string, code: string, message: string): Ending {
  return { failed: true, code, shortMessage: `Command failed with ${code}: ${command}\n${message}`, originalMessage: message };
}

let childProcess: typeof import('node:child_process') | undefined;
/** node:child_process, loaded on first use (process.getBuiltinModule, Node 20.16: synchronous from an ES module, as digest.ts). */
function nodeChildProcess(): typeof import('node:child_process') {
  childProcess ??= process.getBuiltinModule('node:child_process') as typeof import('node:child_process');
  return childProcess;
}

/** The slice of Node's process handle (process_wrap's Process, what node:child_process's ChildProcess drives) used here. */
interface ProcessHandle {
  pid?: number;
  /** Called with the exit code and the name of the signal that ended it ('' for none). */
  onexit: (exitCode: number, signalCode: string) => void;
  /** 0, or a negative errno (uv's) when the program could not be started. */
  spawn(options: {
    file: string;
    args: string[];
    cwd?: string;
    envPairs?: string[];
    stdio: ({ type: 'ignore' } | { type: 'fd'; fd: number })[];
    detached: boolean;
  }): number;
  kill(signal: number): number;
  close(): void;
  unref(): void;
}

let processHandle: (new () => ProcessHandle) | null | undefined;
/** Node's process handle class; null where this Node has none to give. */
function processHandleClass(): (new () => ProcessHandle) | null {
  if (processHandle === undefined) {
    try {
      // @ts-expect-error: deprecated (DEP0111), so @types/node leaves it out; there in Node 20 and 22 (and null-checked).
      const wrap = process.binding('process_wrap') as { Process?: new () => ProcessHandle } | undefined;
      processHandle = wrap?.Process ?? null;
    } catch {
      processHandle = null;
    }
  }
  return processHandle;
}

/** The errno name of a negative uv error (-2: ENOENT), as Node's spawn errors carry it. */
function errnoName(err: number): string {
  return Object.entries(osConstants.errno).find(([, n]) => n === -err)?.[0] ?? `Unknown system error ${err}`;
}

/** A child's stdio slot as the process handle takes it; undefined for one it cannot (a pipe, 'inherit' past fd 2). */
function directSlot(slot: StdioSlot, fd: number): { type: 'ignore' } | { type: 'fd'; fd: number } | undefined {
  if (slot === 'ignore') return { type: 'ignore' };
  if (slot === 'inherit') return { type: 'fd', fd };
  return typeof slot === 'number' ? { type: 'fd', fd: slot } : undefined;
}

/**
 * startProcess on Node's process handle (see the header), for a child without pipes: undefined when it has one or
 * there is no handle to use. What it does is what node:child_process's spawn does for such a child: argv[0] is
 * `file`, found on PATH by libuv; the environment is ours (the process's own, which process.env writes through to)
 * unless `env` is given; errors that child_process reports as an `error` event (EACCES, EAGAIN, EMFILE, ENFILE,
 * ENOENT) arrive in `result` with its message (`spawn runc ENOENT`), and any other is thrown, as spawn throws it.
 */
function startDirect(file: string, args: string[], options: SubprocessOptions, command: string): Subprocess | undefined {
  if (options.input !== undefined || (options.extraStdio ?? []).length > 0) return undefined;
  const stdio = [directSlot(options.stdin ?? 'ignore', 0), directSlot(options.stdout ?? 'pipe', 1), directSlot(options.stderr ?? 'pipe', 2)];
  if (stdio.some((slot) => slot === undefined)) return undefined;
  const Handle = processHandleClass();
  if (!Handle) return undefined;
  const handle = new Handle();
  let exitCode: number | null = null;
  let running = false;
  let resolveResult!: (result: SubprocessResult) => void;
  const result = new Promise<SubprocessResult>((resolve) => (resolveResult = resolve));
  const settle = (end: Ending) => resolveResult({ command, stdout: '', stderr: '', ...end });
  handle.onexit = (code, signalName) => {
    running = false;
    handle.close();
    if (!signalName) exitCode = code;
    settle(ended(command, code, (signalName || null) as NodeJS.Signals | null));
  };
  const err = handle.spawn({
    file,
    args: [file, ...args],
    cwd: options.cwd,
    envPairs: options.env ? Object.entries(options.env).flatMap(([key, value]) => (value === undefined ? [] : [`${key}=${value}`])) : undefined,
    stdio: stdio as ({ type: 'ignore' } | { type: 'fd'; fd: number })[],
    detached: options.detached ?? false,
  });
  if (err !== 0) {
    handle.close();
    const code = errnoName(err);
    const message = `spawn ${file} ${code}`;
    if (!['EACCES', 'EAGAIN', 'EMFILE', 'ENFILE', 'ENOENT'].includes(code)) {
      throw Object.assign(new Error(`spawn ${code}`), { errno: err, code, syscall: 'spawn' });
    }
    settle(notStarted(command, code, message));
    return { pid: undefined, exitCode: null, stdin: null, stdout: null, stderr: null, extra: [], kill: () => false, unref: () => undefined, result };
  }
  running = true;
  const subprocess: Subprocess = {
    pid: handle.pid,
    get exitCode() {
      return exitCode;
    },
    stdin: null,
    stdout: null,
    stderr: null,
    extra: [],
    kill: (signal = 'SIGTERM') => {
      const number = osConstants.signals[signal];
      // Gone already (its exit not yet seen, or seen): nothing to deliver, as ChildProcess.kill answers.
      return running && number !== undefined && handle.kill(number) === 0;
    },
    unref: () => handle.unref(),
    result,
  };
  options.onSpawn?.(subprocess);
  return subprocess;
}

/** Starts `file` with `args` (no shell). Errors, including "not found", arrive in `result`. */
export function startProcess(file: string, args: string[], options: SubprocessOptions = {}): Subprocess {
  const command = [file, ...args].join(' ');
  const direct = startDirect(file, args, options, command);
  if (direct) return direct;
  const stdin = options.input !== undefined ? 'pipe' : (options.stdin ?? 'ignore');
  const child: ChildProcess = nodeChildProcess().spawn(file, args, {
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
      const settle = (result: Ending) => {
        if (settled) return;
        settled = true;
        resolve({ command, stdout: stripFinalNewline(collected.stdout), stderr: stripFinalNewline(collected.stderr), ...result });
      };
      child.on('error', (error: NodeJS.ErrnoException) => {
        // Not started (ENOENT, EACCES), or a failed kill of one that is: only the first counts.
        if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) return;
        settle(notStarted(command, error.code ?? 'ERROR', error.message));
      });
      child.on('close', (exitCode, signal) => settle(ended(command, exitCode ?? 1, signal)));
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
