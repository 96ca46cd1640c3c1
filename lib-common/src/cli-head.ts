/**
 * The part of runCli a tool's start runs before anything else (issue 17): the
 * arguments parsed with the tool's spec and, for `--help` and `--version`,
 * their text written at once. A tool's bundle is built in two files
 * (scripts/build/bundle.mjs): its head (the tool's name, help and spec with
 * this module) is evaluated on every run and answers these alone; anything
 * else (a run, a usage error, CONVEYOR_DUMP_FLAGS) goes to the body, the whole
 * tool, whose runCli parses again with the same code and reports a usage
 * error as any failure. runCli uses the same functions, so a head and a run
 * answer the same arguments the same way.
 *
 * Failure: a usage error is not the head's to report (answerEarly says "not
 * answered"); a closed reader of the text (EPIPE) is a normal end.
 */
import { writeSync } from 'node:fs';
import { parseArgs, type ArgSpec, type ParsedArgs } from './args.js';
import { VERSION } from './version.js';

/** What a tool's head knows of it: the fields of runCli's ToolDefinition that --help and --version need. */
export interface ToolHead {
  name: string;
  help: string;
  spec?: ArgSpec;
}

/** The text --help or --version prints for these parsed arguments, or undefined when the tool runs. */
export function earlyText(head: ToolHead, args: ParsedArgs): string | undefined {
  if (args.help) return head.help.endsWith('\n') ? head.help : `${head.help}\n`;
  if (args.version) return `${head.name} ${VERSION}\n`;
  return undefined;
}

/**
 * Writes `text` straight to file descriptor `fd` (1): stdout as a stream
 * would load node:stream, about half of what a --help run costs beyond Node's
 * own start, and Node writes to files and pipes synchronously anyway. A pipe
 * left non-blocking by whoever started us (EAGAIN) gets the rest through
 * `stream()` (process.stdout, with its EPIPE handled by the caller); a closed
 * reader (EPIPE) is a normal end.
 */
export function writeAtOnce(text: string, fd: number, stream: () => NodeJS.WritableStream): void {
  const bytes = Buffer.from(text);
  let written = 0;
  try {
    while (written < bytes.length) written += writeSync(fd, bytes, written);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EPIPE') return;
    stream().write(bytes.subarray(written));
  }
}

/**
 * The head's whole job: true when `argv` asks for --help or --version and
 * the text was written (the run is over), false when the tool must run (its
 * body parses again and reports a usage error itself).
 */
export function answerEarly(head: ToolHead, argv: string[], env: NodeJS.ProcessEnv, stream: () => NodeJS.WritableStream): boolean {
  // Hidden (scripts/build/gen-completion.mjs): runCli prints the flags.
  if (env.CONVEYOR_DUMP_FLAGS === '1') return false;
  let args: ParsedArgs;
  try {
    args = parseArgs(argv, head.spec);
  } catch {
    return false;
  }
  const text = earlyText(head, args);
  if (text === undefined) return false;
  writeAtOnce(text, 1, stream);
  return true;
}
