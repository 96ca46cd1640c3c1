/**
 * HEALTHCHECK as Docker reads it (instructions/parse.go parseHealthcheck):
 * NONE, or CMD in shell form (CMD-SHELL) or exec form, with --interval,
 * --timeout, --start-period and --start-interval as Go durations (at least
 * 1 ms; 0 means the default) in nanoseconds, and --retries.
 */
import { checkFlags, StepError } from './flags.js';
import { quoted, shown } from './messages.js';
import type { Instruction, Step } from './steps.js';

/** Docker's container.MinimumDuration for HEALTHCHECK intervals. */
const MINIMUM_DURATION_NS = 1_000_000;

export function resolveHealthcheck(instruction: Instruction): Step {
  const base = { line: instruction.line, original: instruction.original };
  const rest = instruction.rest.trim();
  if (rest === '') throw new StepError('HEALTHCHECK requires at least one argument');
  const match = /^(\S+)\s*(.*)$/s.exec(rest) as RegExpExecArray;
  const type = match[1].toUpperCase();
  const command = match[2];
  if (type === 'NONE') {
    if (command.trim() !== '') throw new StepError('HEALTHCHECK NONE takes no arguments');
    if (instruction.flags.length > 0) throw new StepError('HEALTHCHECK NONE takes no flags');
    return { ...base, kind: 'HEALTHCHECK', healthcheck: { Test: ['NONE'] } };
  }
  const flags = checkFlags(instruction);
  if (type !== 'CMD') throw new StepError(`Unknown type ${quoted(type)} in HEALTHCHECK (try CMD)`);
  let test: string[];
  if (instruction.json !== undefined) {
    if (instruction.json.length === 0) throw new StepError('Missing command after HEALTHCHECK CMD');
    test = ['CMD', ...instruction.json];
  } else {
    if (command.trim() === '') throw new StepError('Missing command after HEALTHCHECK CMD');
    test = ['CMD-SHELL', command];
  }
  const healthcheck: Extract<Step, { kind: 'HEALTHCHECK' }>['healthcheck'] = { Test: test };
  const durations: [string, 'Interval' | 'Timeout' | 'StartPeriod' | 'StartInterval'][] = [
    ['interval', 'Interval'],
    ['timeout', 'Timeout'],
    ['start-period', 'StartPeriod'],
    ['start-interval', 'StartInterval'],
  ];
  for (const [flag, field] of durations) {
    const value = flags[flag];
    if (value === undefined || value === '') continue;
    const ns = parseGoDuration(value);
    if (ns === undefined) throw new StepError(`time: invalid duration ${quoted(value)} for --${flag}`, 'use Go durations such as 30s, 1m30s, 500ms');
    if (ns === 0) continue;
    if (ns < MINIMUM_DURATION_NS) throw new StepError(`Interval ${quoted(flag)} cannot be less than 1ms`);
    healthcheck[field] = ns;
  }
  if (flags.retries !== undefined && flags.retries !== '') {
    if (!/^[+-]?\d+$/.test(flags.retries)) throw new StepError(`invalid --retries=${shown(flags.retries)}: not an integer`);
    const retries = Number(flags.retries);
    if (retries < 0) throw new StepError(`--retries cannot be negative (${flags.retries})`);
    if (retries > 2 ** 31 - 1) throw new StepError(`--retries=${shown(flags.retries)} is out of range`);
    if (retries > 0) healthcheck.Retries = retries;
  }
  return { ...base, kind: 'HEALTHCHECK', healthcheck };
}

const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Go's time.ParseDuration, in nanoseconds; undefined when malformed or past what a number holds exactly. */
export function parseGoDuration(text: string): number | undefined {
  let rest = text;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') return undefined;
  let total = 0;
  const part = /^(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)/;
  while (rest !== '') {
    const match = part.exec(rest);
    if (!match || (match[1] === '' && (match[2] ?? '') === '')) return undefined;
    const whole = match[1] === '' ? 0 : Number(match[1]);
    const fraction = match[2] ? Number(`0.${match[2]}`) : 0;
    total += Math.round((whole + fraction) * UNIT_NS[match[3]]);
    rest = rest.slice(match[0].length);
  }
  if (!Number.isSafeInteger(total)) return undefined;
  return sign * total;
}
