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
import type { ArgSpec, ParsedArgs } from './args.js';
import { COMMON_FLAGS } from './common-flags.js';
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

/** The flags the head answers. */
const EARLY_FLAGS = ['help', 'version'];

/**
 * The arguments parsed as parseArgs would, without it, when `argv` is one word that is one of the
 * flags the head answers (`--help`, `-h`, `--version`: what a person or a completion script types),
 * else undefined. minimist is most of what a --help run compiles.
 */
function parsedAlone(argv: string[], spec: ArgSpec | undefined): ParsedArgs | undefined {
  if (argv.length !== 1 || EARLY_FLAGS.some((name) => spec?.default?.[name] !== undefined)) return undefined;
  const alias = { ...COMMON_FLAGS.alias, ...(spec?.alias ?? {}) };
  const name = argv[0].startsWith('--') ? argv[0].slice(2) : argv[0].length === 2 && argv[0][0] === '-' ? alias[argv[0][1]] : undefined;
  // A name an alias also stands for (a tool's own -h, say) takes the general way.
  if (name === undefined || !EARLY_FLAGS.includes(name) || Object.values(spec?.alias ?? {}).includes(name) || name in (spec?.alias ?? {})) return undefined;
  return { _: [], '--': [], [name]: true };
}

/**
 * Whether `argv` may ask for --help or --version: a word before `--` that names one of them, as a
 * long flag (`--help`, `--no-version=x`), an alias of one, or a cluster of short flags holding one.
 * False means parseArgs could not find either (so the head need not parse: the body does).
 */
export function mayAskEarly(argv: string[], spec?: ArgSpec): boolean {
  if (EARLY_FLAGS.some((name) => spec?.default?.[name] !== undefined)) return true;
  const names = new Set(EARLY_FLAGS);
  for (const [from, to] of Object.entries({ ...COMMON_FLAGS.alias, ...(spec?.alias ?? {}) })) {
    if (EARLY_FLAGS.includes(to)) names.add(from);
    if (EARLY_FLAGS.includes(from)) names.add(to);
  }
  for (const word of argv) {
    if (word === '--') return false;
    if (!word.startsWith('-')) continue;
    if (names.has(word.replace(/^--?(no-)?/, '').replace(/=.*$/, ''))) return true;
    if (!word.startsWith('--') && [...word.slice(1)].some((letter) => names.has(letter))) return true;
  }
  return false;
}

/** args.ts's parseArgs, handed in: a head loads it (and minimist) only when it must parse. */
export type Parse = (argv: string[], spec?: ArgSpec) => ParsedArgs;

/**
 * What the head answers to `argv`: the text of --help or --version, or undefined when the tool must
 * run (its body parses again and reports a usage error itself). The same as `parse` and earlyText.
 */
export function earlyAnswer(head: ToolHead, argv: string[], env: NodeJS.ProcessEnv, parse: Parse): string | undefined {
  // Hidden (scripts/build/gen-completion.mjs): runCli prints the flags.
  if (env.CONVEYOR_DUMP_FLAGS === '1') return undefined;
  let args = parsedAlone(argv, head.spec);
  if (args === undefined) {
    // A run: nothing to answer, and nothing parsed twice.
    if (!mayAskEarly(argv, head.spec)) return undefined;
    try {
      args = parse(argv, head.spec);
    } catch {
      return undefined;
    }
  }
  return earlyText(head, args);
}

/** The head's whole job: true when `argv` asks for --help or --version and the text was written (the run is over). */
export function answerEarly(head: ToolHead, argv: string[], env: NodeJS.ProcessEnv, parse: Parse, stream: () => NodeJS.WritableStream): boolean {
  const text = earlyAnswer(head, argv, env, parse);
  if (text === undefined) return false;
  writeAtOnce(text, 1, stream);
  return true;
}
