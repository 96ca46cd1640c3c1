#!/usr/bin/env node
// An interleaved runner (bench/lib.sh measure_ab): hyperfine runs all the runs of one command, then all of
// the next, so a machine that drifts (another job starting, the disk catching up) lands on one side and
// picks the winner. This runs the commands round by round, each round in a new random order, and takes
// each timed run's wall and CPU (user+sys of the command and its descendants) with bench/rusage.c.
//   node bench/ab.mjs --out FILE --rusage BIN --rounds N [--warmup N] [--prepare SH] [--cleanup SH]
//        [--settle S] [--seed N] [-x K] [-p SH] [-i FILE] -n NAME COMMAND [[-x K] [-p SH] [-i FILE] -n NAME COMMAND]...
// COMMAND is split into words as hyperfine -N does (quotes, backslashes; no shell); `{run}` in COMMAND,
// --prepare and --cleanup is the run's number (each run its own: a fresh directory per run). --prepare
// (bash, untimed) runs before each timed run, --cleanup (bash, untimed) after it, then --settle seconds
// of sleep, so that what a run leaves behind (a tree to free, dirty pages) is dealt with before the next
// run's clock starts. -x K runs the next command K times per round (a baseline shared by many commands);
// -p SH is the next command's own --prepare (in place of the common one); -i FILE is the next command's stdin
// (opened for each run; without it stdin is /dev/null): a record redirected with no shell in between.
// Writes FILE: hyperfine's shape for bench/table.mjs (results[].command, .median) plus the CPU figures and
// every sample; prints a line per command (medians, quartiles, ratios to the first command).
// Failure: bad arguments exit 2; a command that fails is counted (`failed`) and its last stderr shown; a
// failing --prepare or --cleanup stops the run (exit 1).
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';

const usage = (why) => {
  process.stderr.write(`ab.mjs: ${why}\n`);
  process.exit(2);
};

/** hyperfine -N's splitting: words by blanks, '…' literal, "…" with \" and \\, \x outside quotes. Pure. */
export function splitWords(command) {
  const words = [];
  let word = null;
  for (let i = 0; i < command.length; i++) {
    const c = command[i];
    if (c === ' ' || c === '\t' || c === '\n') {
      if (word !== null) words.push(word);
      word = null;
    } else if (c === "'") {
      const end = command.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated ' in: ${command}`);
      word = (word ?? '') + command.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      word ??= '';
      for (i++; i < command.length && command[i] !== '"'; i++) {
        if (command[i] === '\\' && (command[i + 1] === '"' || command[i + 1] === '\\')) i++;
        word += command[i];
      }
      if (i >= command.length) throw new Error(`unterminated " in: ${command}`);
    } else if (c === '\\' && i + 1 < command.length) {
      word = (word ?? '') + command[++i];
    } else {
      word = (word ?? '') + c;
    }
  }
  if (word !== null) words.push(word);
  return words;
}

const options = { rounds: 10, warmup: 1, settle: 0, seed: 17 };
const commands = [];
{
  const argv = process.argv.slice(2);
  let times = 1;
  let prepare;
  let stdin;
  for (let i = 0; i < argv.length; i++) {
    const value = () => (i + 1 < argv.length ? argv[++i] : usage(`${argv[i]} needs a value`));
    switch (argv[i]) {
      case '--out':
      case '--rusage':
      case '--prepare':
      case '--cleanup':
        options[argv[i].slice(2)] = value();
        break;
      case '--rounds':
      case '--warmup':
      case '--settle':
      case '--seed':
        options[argv[i].slice(2)] = Number(value());
        break;
      case '-x':
        times = Number(value());
        break;
      case '-p':
        prepare = value();
        break;
      case '-i':
        stdin = value();
        break;
      case '-n': {
        const name = value();
        commands.push({ name, command: value(), times, prepare, stdin });
        times = 1;
        prepare = undefined;
        stdin = undefined;
        break;
      }
      default:
        usage(`unknown argument ${argv[i]}`);
    }
  }
  if (!options.out || !options.rusage || commands.length === 0) usage('needs --out, --rusage and at least one -n NAME COMMAND');
  for (const key of ['rounds', 'warmup', 'settle', 'seed']) if (!Number.isFinite(options[key]) || options[key] < 0) usage(`--${key} must be a number >= 0`);
  for (const c of commands) if (!Number.isInteger(c.times) || c.times < 1) usage(`-x must be a whole number >= 1 (${c.name})`);
}

// A seeded generator (mulberry32): the same seed, the same orders, run after run.
let state = options.seed >>> 0;
const random = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const shuffled = (xs) => {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
};

const sleep = (s) => s > 0 && Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, s * 1000);
const shell = (what, script, run) => {
  if (!script) return;
  const r = spawnSync('bash', ['-c', script.replaceAll('{run}', String(run))], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) {
    process.stderr.write(`ab.mjs: --${what} failed (run ${run}): ${String(r.stderr).trim().slice(-400)}\n`);
    process.exit(1);
  }
};

const samples = commands.map(() => ({ wall: [], cpu: [], user: [], sys: [], rss: [], failed: 0, lastError: '' }));
let run = 0;
/** One timed run of command `i`; `keep` false for a warm-up. */
const timed = (i, keep) => {
  run++;
  shell('prepare', commands[i].prepare ?? options.prepare, run);
  const argv = splitWords(commands[i].command.replaceAll('{run}', String(run)));
  const input = commands[i].stdin === undefined ? 'ignore' : openSync(commands[i].stdin, 'r');
  let r;
  try {
    r = spawnSync(options.rusage, argv, { stdio: [input, 'ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20 });
  } finally {
    if (typeof input === 'number') closeSync(input);
  }
  const report = String(r.output?.[3] ?? '').trim();
  shell('cleanup', options.cleanup, run);
  sleep(options.settle);
  if (!keep) return;
  const s = samples[i];
  const [wall, user, sys, rss, status] = report.split(' ').map(Number);
  if (!report || status !== 0) {
    s.failed++;
    s.lastError = String(r.stderr ?? r.error ?? '')
      .trim()
      .slice(-400);
    if (!report) return;
  }
  s.wall.push(wall);
  s.user.push(user);
  s.sys.push(sys);
  s.cpu.push(user + sys);
  s.rss.push(rss);
};

const order = () => shuffled(commands.flatMap((c, i) => Array.from({ length: c.times }, () => i)));
const began = process.hrtime.bigint();
for (let w = 0; w < options.warmup; w++) for (const i of order()) timed(i, false);
for (let r = 0; r < options.rounds; r++) for (const i of order()) timed(i, true);
const seconds = Number(process.hrtime.bigint() - began) / 1e9;

const quantile = (xs, q) => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
};
const results = commands.map((c, i) => {
  const s = samples[i];
  return {
    command: c.name,
    argv: c.command,
    runs: s.wall.length,
    failed: s.failed,
    lastError: s.lastError,
    median: quantile(s.wall, 0.5),
    q1: quantile(s.wall, 0.25),
    q3: quantile(s.wall, 0.75),
    min: quantile(s.wall, 0),
    max: quantile(s.wall, 1),
    cpu_median: quantile(s.cpu, 0.5),
    cpu_q1: quantile(s.cpu, 0.25),
    cpu_q3: quantile(s.cpu, 0.75),
    user_median: quantile(s.user, 0.5),
    system_median: quantile(s.sys, 0.5),
    rss_median_kb: quantile(s.rss, 0.5),
    times: s.wall,
    cpu: s.cpu,
  };
});
writeFileSync(
  options.out,
  `${JSON.stringify({ runner: 'bench/ab.mjs', rounds: options.rounds, warmup: options.warmup, settle: options.settle, seconds, results })}\n`,
);

const ms = (x) => (x === undefined ? '—' : (x * 1000).toFixed(1));
const base = results[0];
const width = Math.min(40, Math.max(...results.map((r) => r.command.length)));
for (const r of results) {
  const ratio = (a, b) => (a !== undefined && b ? `${(a / b).toFixed(2)}x` : '—');
  process.stdout.write(
    `  ${r.command.padEnd(width)} wall ${ms(r.median)} ms (IQR ${ms(r.q1)}-${ms(r.q3)}, ${r.runs} runs) ${ratio(r.median, base.median)}` +
      `   CPU ${ms(r.cpu_median)} ms ${ratio(r.cpu_median, base.cpu_median)}   peak RSS ${Math.round((r.rss_median_kb ?? 0) / 1024)} MB` +
      `${r.failed ? `   FAILED ${r.failed}x: ${r.lastError.split('\n').pop()}` : ''}\n`,
  );
}
