/**
 * The one module that owns the process (its arguments, environment, stdio and
 * exit status): each tool's cli.ts hands its parser spec and main function to
 * runCli, which handles --help/--version, logging set-up, stdout EPIPE, and
 * turning thrown errors into messages and exit codes.
 */
import { parseArgs, flag, type ArgSpec, type ParsedArgs } from './args.js';
import { ConveyorError, EXIT, toConveyorError } from './errors.js';
import { Logger, Progress, type LogFormat, type ProgressMode } from './log.js';
import { RecordWriter } from './ndjson.js';
import { defaultStoreRoot } from './paths.js';
import { VERSION } from './version.js';

export interface ToolContext {
  tool: string;
  args: ParsedArgs;
  log: Logger;
  progress: Progress;
  out: RecordWriter;
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
  /** The store root from --root, CONVEYOR_ROOT, or the default for this user. */
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
  /** Maps a failure to the exit code (ctr-spawn: Docker's 125 for its own failures). Default: the error's exitCode. */
  exitCodeFor?: (error: ConveyorError) => number;
}

export async function runCli(def: ToolDefinition, argv = process.argv.slice(2)): Promise<void> {
  let log = new Logger(def.name, process.stderr, argv.includes('--log-format=json') ? 'json' : 'text');
  let progress: Progress | undefined;
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    // A closed reader downstream (`| head`) is a normal end, not a failure.
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? EXIT.OK);
  });
  try {
    const args = parseArgs(argv, def.spec);
    if (args.help) {
      process.stdout.write(def.help.endsWith('\n') ? def.help : def.help + '\n');
      return;
    }
    if (args.version) {
      process.stdout.write(`${def.name} ${VERSION}\n`);
      return;
    }
    const format = flag(args, 'log-format') ?? 'text';
    if (format !== 'text' && format !== 'json') throw new ConveyorError('ERR_USAGE', `--log-format must be text or json, got ${JSON.stringify(format)}`);
    const progressMode = flag(args, 'progress') ?? 'auto';
    if (!['auto', 'json', 'bar', 'none'].includes(progressMode)) {
      throw new ConveyorError('ERR_USAGE', `--progress must be auto, json, bar or none, got ${JSON.stringify(progressMode)}`);
    }
    log = new Logger(def.name, process.stderr, format as LogFormat, Boolean(args.quiet));
    progress = new Progress(def.name, process.stderr, args.quiet ? 'none' : (progressMode as ProgressMode));
    const ctx: ToolContext = {
      tool: def.name,
      args,
      log,
      progress,
      out: new RecordWriter(process.stdout),
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
      env: process.env,
      root: flag(args, 'root') ?? process.env.CONVEYOR_ROOT ?? defaultStoreRoot(process.env, process.getuid?.() ?? 0),
      humanOutput: Boolean(process.stdout.isTTY),
    };
    const code = await def.main(ctx);
    progress.finish();
    process.exitCode = code ?? EXIT.OK;
  } catch (error) {
    progress?.finish();
    let err = toConveyorError(error);
    const code = def.exitCodeFor ? def.exitCodeFor(err) : err.exitCode;
    if (code !== err.exitCode) err = new ConveyorError(err.code, err.message, { hint: err.hint, details: err.details, exitCode: code, cause: error });
    log.error(err);
    if (err.code === 'ERR_INTERNAL' && process.env.CONVEYOR_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
    process.exitCode = code;
  }
}
