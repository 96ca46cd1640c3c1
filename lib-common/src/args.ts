/**
 * Argument parsing on minimist with the strictness scripts need: strings stay
 * strings (`--tag 010` is "010"), unknown flags are usage errors (exit 2), and
 * flags that may repeat are always arrays.
 */
import minimist from 'minimist';
import { COMMON_FLAGS } from './common-flags.js';
import { ConveyorError } from './errors.js';

export interface ArgSpec {
  /** Flags that take a value. */
  string?: string[];
  /** Flags that are on or off. */
  boolean?: string[];
  /** Value flags that may be given several times; always parsed into arrays. */
  multiple?: string[];
  alias?: Record<string, string>;
  default?: Record<string, unknown>;
  /** Collect the words after `--` separately (ctr-spawn's command). */
  stopAtDoubleDash?: boolean;
  /**
   * Stop at the first positional word and keep the rest verbatim (a command
   * line after the image reference).
   */
  stopEarly?: boolean;
}

/** Flags every tool understands (common-flags.ts: a tool's head reads them without minimist). */
export { COMMON_FLAGS };

export interface ParsedArgs {
  _: string[];
  '--': string[];
  [flag: string]: unknown;
}

export function parseArgs(argv: string[], spec: ArgSpec = {}): ParsedArgs {
  const strings = [...COMMON_FLAGS.string, ...(spec.string ?? []), ...(spec.multiple ?? [])];
  const booleans = [...COMMON_FLAGS.boolean, ...(spec.boolean ?? [])];
  const alias = { ...COMMON_FLAGS.alias, ...(spec.alias ?? {}) };
  const known = new Set<string>([...strings, ...booleans, ...Object.keys(alias), ...Object.values(alias)]);
  const unknown: string[] = [];
  const parsed = minimist(argv, {
    string: [...strings, '_'],
    boolean: booleans,
    alias,
    default: spec.default,
    '--': spec.stopAtDoubleDash ?? false,
    stopEarly: spec.stopEarly ?? false,
    unknown: (arg: string) => {
      if (!arg.startsWith('-') || arg === '-') return true;
      const name = arg.replace(/^--?(no-)?/, '').replace(/=.*$/, '');
      if (known.has(name)) return true;
      unknown.push(arg);
      return false;
    },
  }) as ParsedArgs;
  if (unknown.length > 0) {
    throw new ConveyorError('ERR_USAGE', `unknown flag ${unknown[0]}`, { hint: 'see --help' });
  }
  for (const name of strings) {
    const value = parsed[name];
    const isMultiple = spec.multiple?.includes(name);
    if (isMultiple) {
      parsed[name] = value === undefined ? [] : Array.isArray(value) ? value.map(String) : [String(value)];
    } else if (Array.isArray(value)) {
      throw new ConveyorError('ERR_USAGE', `--${name} given more than once`, { hint: 'see --help' });
    } else if (value === '' && argv.some((a) => a === `--${name}` || a === `-${name}`) && !argv.some((a) => a.startsWith(`--${name}=`))) {
      // minimist turns a trailing `--flag` with no value into "", which would hide a typo.
      const index = argv.lastIndexOf(`--${name}`);
      if (index === argv.length - 1) throw new ConveyorError('ERR_USAGE', `--${name} needs a value`, { hint: 'see --help' });
    }
  }
  const end = argv.indexOf('--');
  const flagWords = end < 0 ? argv : argv.slice(0, end);
  for (const name of booleans) {
    const withValue = flagWords.find((a) => a.startsWith(`--${name}=`) || a.startsWith(`--no-${name}=`));
    if (withValue || (typeof parsed[name] !== 'boolean' && parsed[name] !== undefined)) {
      throw new ConveyorError('ERR_USAGE', `--${name} takes no value`, { hint: 'see --help' });
    }
  }
  parsed._ = (parsed._ ?? []).map(String);
  parsed['--'] = (parsed['--'] ?? []).map(String);
  return parsed;
}

/** Reads a string flag, or undefined. */
export function flag(args: ParsedArgs, name: string): string | undefined {
  const value = args[name];
  return typeof value === 'string' ? value : undefined;
}

/** Parses `--name N` as a positive integer within bounds, or throws a usage error. */
export function intFlag(args: ParsedArgs, name: string, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const raw = flag(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConveyorError('ERR_USAGE', `--${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Parses sizes like `512m`, `2g`, `1048576` (Docker's units, powers of 1024). */
export function parseBytes(raw: string, what: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(raw.trim());
  if (!match) throw new ConveyorError('ERR_USAGE', `${what}: not a size: ${JSON.stringify(raw)}`, { hint: 'use a number with an optional unit: k, m, g, t' });
  const units: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };
  return Math.floor(Number(match[1]) * units[match[2].toLowerCase()]);
}
