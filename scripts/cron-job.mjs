#!/usr/bin/env -S node --
// conveyor-cron-job: one run of a scheduled job, for cron. Starts a container
// named JOB-<UTC time> from IMAGE (conveyor-run -d: pulled if missing), keeps
// its output as a file in the log directory, removes the job's containers that
// ended longer ago than --keep (their logs saved first) and log files older
// than --keep-logs, then prunes the store (img-prune). In the foreground
// (default) it follows the container's output to stdout/stderr and exits with
// its exit code; with -d it returns once the container runs (a later run
// saves its log). A crontab line (every 15 minutes; cron mails what it prints):
//
//   */15 * * * * conveyor-cron-job --name backup --log-dir /var/log/conveyor-jobs/backup -- -v /srv/data:/data:ro -v /srv/backups:/out busybox tar czf /out/backup.tgz /data
//
// Everything after `--` is conveyor-run's: ctr-spawn's flags, IMAGE, COMMAND.
// Log files: <log-dir>/<container name>.log (the output, in order) and
// <container name>.json (its final container record: exit code, times).
import { $, minimist } from 'zx';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { appendFileSync, existsSync, mkdirSync, readdirSync, statSync, unlinkSync, writeFileSync, realpathSync } from 'node:fs';
import os from 'node:os';

const HELP = `Usage: conveyor-cron-job [OPTIONS] --name JOB -- [RUN-OPTIONS] IMAGE [COMMAND [ARG...]]

One run of a scheduled job: start a container named JOB-<UTC time> from IMAGE
(conveyor-run -d; pulled if missing), keep its output in the log directory,
remove earlier runs' containers that ended longer ago than --keep (saving
their logs first) and log files older than --keep-logs, then prune the store.
RUN-OPTIONS after -- are conveyor-run's (ctr-spawn's -e, -v, -m, --rm ...).

Options:
      --name JOB          the job's name: its containers are JOB-<YYYYMMDDTHHMMSSZ>
  -d, --detach            start the container and return (a later run saves its log)
      --log-dir DIR       where logs are kept (default: /var/log/conveyor-jobs/JOB as
                          root, $XDG_STATE_HOME/conveyor-jobs/JOB otherwise)
      --keep DURATION     remove job containers that ended longer ago (default 24h)
      --keep-logs DURATION  remove log files older than this (default 7d)
      --prune-all         prune with img-prune -a (also images no container uses)
      --no-prune          do not prune the store
      --root DIR          store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
  -h, --help              show this help

DURATION: 90s, 30m, 24h, 7d, 1h30m, or 0 (at once).

Crontab example (every 15 minutes):
  */15 * * * * conveyor-cron-job --name backup -- -v /srv/data:/data:ro -v /srv/backups:/out busybox tar czf /out/b.tgz /data

Exit status: the job's exit code in the foreground (125/126/127: it could not
start), 0 once started with -d; 2 usage; 1 when the job succeeded but the
clean-up failed.
`;

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const tool = (name) => join(here, '..', 'tools', name, 'bin', `${name}.js`);
const JOB_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,100}$/;

/** Seconds in a duration: 90s, 30m, 24h, 7d, 1h30m, 0. */
function parseDuration(text, flag) {
  if (text === '0') return 0;
  const parts = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(String(text));
  if (!parts || text === '') usage(`${flag} must be a duration such as 30m, 24h or 7d, got ${JSON.stringify(text)}`);
  const [d, h, m, s] = parts.slice(1).map((v) => Number(v ?? 0));
  return ((d * 24 + h) * 60 + m) * 60 + s;
}

function usage(message) {
  process.stderr.write(`conveyor-cron-job: ${message} (see --help)\n`);
  process.exit(2);
}

const warn = (message) => process.stderr.write(`conveyor-cron-job: ${message}\n`);

const dash = process.argv.indexOf('--');
const own = minimist(dash === -1 ? process.argv.slice(2) : process.argv.slice(2, dash), {
  string: ['name', 'log-dir', 'keep', 'keep-logs', 'root'],
  boolean: ['help', 'detach', 'prune', 'prune-all'],
  alias: { d: 'detach', h: 'help' },
  default: { prune: true },
  unknown: (flag) => flag.startsWith('-') && usage(`unknown option ${flag}`),
});
const runArgs = dash === -1 ? [] : process.argv.slice(dash + 1);

if (own.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
if (!own.name || !JOB_NAME.test(own.name)) usage('--name JOB is required: letters, digits, _ . - (at most 101)');
if (own._.length > 0) usage(`unexpected ${JSON.stringify(own._[0])} before --`);
if (runArgs.length === 0) usage('an IMAGE is required after --');
const keep = parseDuration(own.keep ?? '24h', '--keep');
const keepLogs = parseDuration(own['keep-logs'] ?? '7d', '--keep-logs');
const root = own.root ? ['--root', own.root] : [];
const stateHome = process.env.XDG_STATE_HOME || join(os.homedir(), '.local', 'state');
const logDir = own['log-dir'] ?? (process.getuid?.() === 0 ? join('/var/log/conveyor-jobs', own.name) : join(stateHome, 'conveyor-jobs', own.name));
mkdirSync(logDir, { recursive: true, mode: 0o700 });

$.verbose = false;
// `node --` ends node's own options: Node 20 reads --env-file anywhere on its command line otherwise.
const node = [process.execPath, '--'];
const stamp = new Date()
  .toISOString()
  .replace(/[-:]/g, '')
  .replace(/\.\d+Z$/, 'Z');
const name = `${own.name}-${stamp}`;
const ours = new RegExp(`^${own.name.replace(/[.]/g, '\\.')}-\\d{8}T\\d{6}Z$`);

/** The job's containers, as ctr-ls records. */
async function jobContainers() {
  const listed = await $({ nothrow: true })`${node} ${tool('ctr-ls')} ${root} -a --json`;
  if (listed.exitCode !== 0) throw new Error(`ctr-ls failed: ${listed.stderr.trim()}`);
  return listed.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .filter((record) => record.type === 'container' && ours.test(record.name ?? ''));
}

/** Writes a container's output and final record to the log directory (replacing a partial log). */
async function saveLog(container) {
  const logs = await $({ nothrow: true })`${node} ${tool('ctr-logs')} ${root} --log-format=json ${container.id}`;
  if (logs.exitCode !== 0) throw new Error(`ctr-logs ${container.name} failed: ${logs.stderr.trim()}`);
  const text = logs.stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line).log ?? '')
    .join('');
  writeFileSync(join(logDir, `${container.name}.log`), text);
  writeFileSync(join(logDir, `${container.name}.json`), `${JSON.stringify(container)}\n`);
}

/** The job's exit code: the container's own, 128+N for a signal, as a shell reports it. */
function exitCodeOf(container) {
  if (typeof container?.exitCode === 'number') return container.exitCode;
  if (container?.signal) return 128 + (os.constants.signals[container.signal] ?? 0);
  return 1;
}

// 1. Start the job's container.
const started = await $({ nothrow: true, stdio: ['ignore', 'pipe', 'inherit'] })`${node} ${join(here, 'run.mjs')} ${root} -d --name ${name} ${runArgs}`;
let code = started.exitCode ?? 1;
let record;
try {
  record = JSON.parse(started.stdout.split('\n').find((line) => line.startsWith('{')) ?? 'null');
} catch {
  record = null;
}
if (code === 0 && !record) code = 1;

// 2. In the foreground: follow its output to our stdout/stderr and the log file, until it ends.
if (code === 0 && !own.detach) {
  const logFile = join(logDir, `${name}.log`);
  writeFileSync(logFile, '');
  const follow = $({ nothrow: true })`${node} ${tool('ctr-logs')} ${root} -f --log-format=json ${record.id}`;
  let pending = '';
  for await (const chunk of follow.stdout) {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      const entry = JSON.parse(line);
      if (entry.type !== 'log') continue;
      (entry.stream === 'stderr' ? process.stderr : process.stdout).write(entry.log);
      appendFileSync(logFile, entry.log);
    }
  }
  await follow;
  // ctr-logs -f ends with the container; its record may still be catching up with the end.
  let ended;
  for (let i = 0; i < 100; i++) {
    ended = (await jobContainers()).find((c) => c.id === record.id);
    if (!ended || ended.status === 'exited') break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (ended) writeFileSync(join(logDir, `${name}.json`), `${JSON.stringify(ended)}\n`);
  code = exitCodeOf(ended);
} else if (code === 0) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

// 3. Clean up: earlier runs' ended containers (logs saved first), old log files, the store.
let cleanupFailed = false;
try {
  const now = Date.now();
  for (const container of await jobContainers()) {
    // This run's own container is the next run's to remove.
    if (container.status !== 'exited' || container.id === record?.id) continue;
    if (!existsSync(join(logDir, `${container.name}.json`))) await saveLog(container);
    const finished = Date.parse(container.finishedAt ?? container.createdAt ?? '');
    if (Number.isNaN(finished) || now - finished < keep * 1000) continue;
    const removed = await $({ nothrow: true })`${node} ${tool('ctr-rm')} ${root} ${container.id}`;
    if (removed.exitCode !== 0) throw new Error(`ctr-rm ${container.name} failed: ${removed.stderr.trim()}`);
  }
  for (const file of readdirSync(logDir)) {
    const base = file.replace(/\.(log|json)$/, '');
    if (base === file || !ours.test(base) || base === name) continue;
    if (now - statSync(join(logDir, file)).mtimeMs >= keepLogs * 1000) unlinkSync(join(logDir, file));
  }
  if (own.prune) {
    const pruned = await $({ nothrow: true, stdio: ['ignore', 'ignore', 'pipe'] })`${node} ${tool('img-prune')} ${root} -q ${own['prune-all'] ? ['-a'] : []}`;
    if (pruned.exitCode !== 0) throw new Error(`img-prune failed: ${pruned.stderr.trim()}`);
  }
} catch (error) {
  warn(`clean-up: ${error.message}`);
  cleanupFailed = true;
}
process.exitCode = code !== 0 ? code : cleanupFailed ? 1 : 0;
