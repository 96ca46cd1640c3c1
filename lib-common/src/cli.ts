/**
 * The one module that owns the process (its arguments, environment, stdio and
 * exit status): each tool's cli.ts hands its parser spec and main function to
 * runCli, which handles --help/--version, logging set-up, stdout EPIPE, and
 * turning thrown errors into messages, `error` records and exit codes
 * (lib-common/pipeline: a failure upstream sets the exit code).
 */
import { COMMON_FLAGS, parseArgs, flag, type ArgSpec, type ParsedArgs } from './args.js';
import { earlyText, writeAtOnce } from './cli-head.js';
import { ConveyorError, EXIT, toConveyorError } from './errors.js';
import { stdOutput, streamOf } from './fd-output.js';
import { Logger, Progress, type LogFormat, type ProgressMode } from './log.js';
import { RecordWriter } from './ndjson.js';
import { resolve } from 'node:path';
import { pipeline } from './pipeline.js';

export interface ToolContext {
  tool: string;
  args: ParsedArgs;
  log: Logger;
  progress: Progress;
  out: RecordWriter;
  stdin: NodeJS.ReadStream;
  /**
   * process.stdout and process.stderr, made when first read (fd-output.ts: records, log lines and
   * `print`'s text are written without them); read them only to pipe into them (a tar, a container's logs).
   */
  readonly stdout: NodeJS.WriteStream;
  readonly stderr: NodeJS.WriteStream;
  /**
   * Prints text that is no record (a -q line, a table) on stdout as records are written (fd-output.ts):
   * in order with them, at once on a pipe or file (a full pipe waits for its reader) without making
   * process.stdout, through the stream on a terminal; a reader gone (EPIPE) ends the run quietly.
   */
  print(text: string): void;
  env: NodeJS.ProcessEnv;
  /** The store root from --root, CONVEYOR_ROOT, or the default for this user; always absolute (records carry it). */
  root: string;
  /** True when stdout is a terminal: print tables for humans instead of NDJSON. */
  humanOutput: boolean;
}

export interface ToolDefinition {
  name: string;
  /** Full --help text: synopsis, flags, examples. */
  help: string;
  spec?: ArgSpec;
  /** Returns the exit code (default 0). */
  main: (ctx: ToolContext) => Promise<number | void>;
  /**
   * Whether stdout carries records in this run, so `error` records may go
   * there (docs/protocol.md rule 8). Default: yes. ctr-spawn in the
   * foreground: no, its stdout is the container's.
   */
  recordsOnStdout?: (args: ParsedArgs) => boolean;
  /** Maps a failure to the exit code (ctr-spawn: Docker's 125 for its own failures). Default: the error's exitCode. */
  exitCodeFor?: (error: ConveyorError) => number;
  /**
   * Rootless (issue 15): the tool mounts, chowns, runs runc or removes files
   * owned by subordinate ids, so a caller who is not root runs it inside the
   * store's user namespace: runCli runs it again there (rootless/enter) and
   * exits as it does. A function decides per run, given the store it would
   * use. Root pays nothing.
   */
  userNamespace?: boolean | ((args: ParsedArgs, root: string) => boolean);
}

/** Signals the tool re-run in the user namespace gets from us (it also gets the terminal's, as our process group). */
const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** Runs the tool again inside the store's user namespace; our exit follows its. */
async function runInUserNamespace(root: string, argv: string[]): Promise<void> {
  const { enterUserNamespace } = await import('./rootless/enter.js');
  const { child, done } = await enterUserNamespace({
    root,
    command: [process.execPath, ...process.execArgv, process.argv[1], ...argv],
    env: process.env,
    cwd: process.cwd(),
    uid: process.geteuid?.() ?? 0,
    gid: process.getegid?.() ?? 0,
  });
  const forward = (signal: NodeJS.Signals) => child.kill(signal);
  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
  const end = await done.finally(() => {
    for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
  });
  if (end.signal) {
    // Die as it did, so our caller sees the same signal (the shell's 128+N should we survive it: SIGUSR1 starts node's inspector).
    const { constants: osConstants } = await import('node:os');
    process.exitCode = 128 + (osConstants.signals[end.signal] ?? 0);
    process.kill(process.pid, end.signal);
    return;
  }
  process.exitCode = end.exitCode ?? EXIT.FAILED;
}

/** Ends the run when stdout's reader went away (`| head`): a normal end, not a failure. */
function exitOnClosedStdout(error: NodeJS.ErrnoException): void {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK);
}

/** --help's or --version's text, written at once (cli-head: a stdio stream would load node:stream). */
function writeStdoutAtOnce(text: string): void {
  writeAtOnce(text, 1, () => process.stdout.on('error', exitOnClosedStdout));
}

export async function runCli(def: ToolDefinition, argv = process.argv.slice(2)): Promise<void> {
  // Hidden: scripts/build/gen-completion.mjs reads a tool's flags this way, without running it.
  const dumpFlags = process.env.CONVEYOR_DUMP_FLAGS === '1';
  // Parsed first, before any stream or logger exists: --help and --version need nothing else. A
  // usage error is reported below, as every failure is (a message and an `error` record).
  let args: ParsedArgs | undefined;
  let usageError: unknown;
  if (!dumpFlags) {
    try {
      args = parseArgs(argv, def.spec);
    } catch (error) {
      usageError = error;
    }
    // The answer a bundled tool's head gives (cli-head), for a start from dist/ (and the build's warm-up of the body).
    const early = args ? earlyText(def, args) : undefined;
    if (early !== undefined) return writeStdoutAtOnce(early);
  }
  // Written without a stream on a pipe, file or socket (fd-output.ts): a stream loads node:net and node:stream.
  const stdout = stdOutput(1, () => process.stdout);
  const stderr = stdOutput(2, () => process.stderr);
  let log = new Logger(def.name, stderr, argv.includes('--log-format=json') ? 'json' : 'text');
  let progress: Progress | undefined;
  const out = new RecordWriter(stdout);
  // Error records are for the programs reading our stdout; a human on a terminal has the message on stderr.
  pipeline.attach({ tool: def.name, sink: stdout.isTTY ? undefined : out });
  stdout.on('error', exitOnClosedStdout);
  // Named in the message of a write the store's file system refused (full, read-only).
  let storeRoot: string | undefined;
  try {
    if (dumpFlags) {
      stdout.write(`${JSON.stringify({ name: def.name, spec: def.spec ?? {}, common: COMMON_FLAGS, help: def.help })}\n`);
      return;
    }
    if (usageError !== undefined || args === undefined) throw usageError;
    const format = flag(args, 'log-format') ?? 'text';
    if (format !== 'text' && format !== 'json') throw new ConveyorError('ERR_USAGE', `--log-format must be text or json, got ${JSON.stringify(format)}`);
    const progressMode = flag(args, 'progress') ?? 'auto';
    if (!['auto', 'json', 'bar', 'none'].includes(progressMode)) {
      throw new ConveyorError('ERR_USAGE', `--progress must be auto, json, bar or none, got ${JSON.stringify(progressMode)}`);
    }
    log = new Logger(def.name, stderr, format as LogFormat, Boolean(args.quiet));
    progress = new Progress(def.name, stderr, args.quiet ? 'none' : (progressMode as ProgressMode));
    // paths.js loads node:os: only a run without --root or CONVEYOR_ROOT needs it.
    const given = flag(args, 'root') ?? (process.env.CONVEYOR_ROOT || undefined);
    const storeRootFor = given === undefined ? (await import('./paths.js')).defaultStoreRoot : () => given;
    const rootFor = (uid: number) => resolve(storeRootFor(process.env, uid));
    if (def.userNamespace && (process.geteuid?.() ?? 0) !== 0) {
      const root = rootFor(process.geteuid?.() ?? 0);
      if (def.userNamespace === true || def.userNamespace(args, root)) return await runInUserNamespace(root, argv);
    }
    // Run again by the above: the store's path was checked outside, where its parents' owners are visible.
    if (process.env.CONVEYOR_USERNS && process.env.CONVEYOR_ROOT) (await import('./store.js')).trustCheckedOutside(process.env.CONVEYOR_ROOT);
    const terminalLog = log;
    pipeline.attach({
      tool: def.name,
      sink: stdout.isTTY || def.recordsOnStdout?.(args) === false ? undefined : out,
      onTerminalInput: () => terminalLog.info('reading records from stdin; pipe img-fetch into me, or Ctrl-D'),
    });
    const ctx: ToolContext = {
      tool: def.name,
      args,
      log,
      progress,
      out,
      // A getter: process.stdin is a stream made on first use, which a tool that never reads it (img-ls, img-fetch IMAGE) need not pay for.
      get stdin() {
        return process.stdin;
      },
      // Getters, as stdin: a stream is made only for a tool that asks for one.
      get stdout() {
        return streamOf(stdout);
      },
      get stderr() {
        return streamOf(stderr);
      },
      print: (text) => void stdout.write(text),
      env: process.env,
      // Relative to where we were started: records carry it to tools that may run elsewhere, and insist on an absolute store.
      root: rootFor(process.getuid?.() ?? 0),
      humanOutput: Boolean(stdout.isTTY),
    };
    storeRoot = ctx.root;
    const code = await def.main(ctx);
    progress.finish();
    process.exitCode = pipeline.exitCode(code ?? EXIT.OK);
  } catch (error) {
    progress?.finish();
    let err = toConveyorError(error, 'ERR_INTERNAL', { store: storeRoot });
    // Nothing to do but an upstream failure: it was passed on, and its tool said it already.
    if (err.code === 'ERR_UPSTREAM_FAILED') {
      process.exitCode = pipeline.exitCode(err.exitCode);
      return;
    }
    const code = def.exitCodeFor ? def.exitCodeFor(err) : err.exitCode;
    if (code !== err.exitCode) err = new ConveyorError(err.code, err.message, { hint: err.hint, details: err.details, exitCode: code, cause: error });
    log.error(err);
    if (err.code === 'ERR_INTERNAL' && process.env.CONVEYOR_DEBUG) stderr.write(`${(error as Error).stack}\n`);
    await pipeline.reportOwn(err);
    process.exitCode = pipeline.exitCode(code);
  }
}
