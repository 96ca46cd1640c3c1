/**
 * conveyor-cron-job (scripts/cron-job.mjs), run twice as cron would: the first
 * run follows its job container's output and exits with its code, keeping the
 * log; the second removes the first's container (ended longer ago than
 * --keep 0), keeps its log, and prunes the store.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { busyboxLayout, importToStore, REPO_ROOT } from './helpers/fixtures.js';
import { removeStore, tempStore } from './helpers/rootfs.js';
import { runToolSync } from './helpers/tools.js';

const run = promisify(execFile);
const CRON_JOB = join(REPO_ROOT, 'scripts', 'cron-job.mjs');

t.test('two scheduled runs: output and exit code, logs kept, old containers removed, the store pruned', async (t) => {
  const root = tempStore('conveyor-cron-');
  t.teardown(() => removeStore(root));
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  const logDir = join(root, '..', 'logs');
  const job = (args: string[], command: string[]) =>
    run(process.execPath, [CRON_JOB, '--root', root, '--name', 'tick', '--log-dir', logDir, ...args, '--', 'busybox', ...command]).then(
      (done) => ({ code: 0, ...done }),
      (error) => error,
    );

  const first = await job([], ['sh', '-c', 'echo out; echo err >&2; exit 3']);
  t.equal(first.code, 3, `the job's exit code: ${first.stderr}`);
  t.equal(first.stdout, 'out\n');
  t.equal(first.stderr, 'err\n');
  const firstLogs = readdirSync(logDir).sort();
  t.match(firstLogs, [/^tick-\d{8}T\d{6}Z\.json$/, /^tick-\d{8}T\d{6}Z\.log$/]);
  // Both streams, each line whole (their interleaving is the supervisor's, two pipes read as they come).
  t.strictSame(readFileSync(join(logDir, firstLogs[1]), 'utf8').split('\n').sort(), ['', 'err', 'out'], 'the log holds both streams');
  t.match(JSON.parse(readFileSync(join(logDir, firstLogs[0]), 'utf8')), { type: 'container', status: 'exited', exitCode: 3 });
  t.equal(runToolSync('ctr-ls', ['--root', root, '-a', '-q']).stdout.trim().split('\n').length, 1, 'its container is kept (--keep 24h)');

  const orphan = join(root, 'blobs', 'sha256', 'c'.repeat(64));
  writeFileSync(orphan, 'garbage');
  await new Promise((resolve) => setTimeout(resolve, 1100)); // the next run gets the next second's name
  const second = await job(['--keep', '0', '-d'], ['echo', 'second']);
  t.equal(second.code, 0, second.stderr);
  const started = JSON.parse(second.stdout);
  t.match(started, { type: 'container', name: /^tick-/, status: 'running' });
  const left = runToolSync('ctr-ls', ['--root', root, '-a', '--json']).records;
  t.strictSame(
    left.map((r) => r.id),
    [started.id],
    'the first run\u2019s container was removed, the new one is there',
  );
  t.ok(existsSync(join(logDir, firstLogs[1])), 'the removed container\u2019s log is kept');
  t.notOk(existsSync(orphan), 'the store was pruned');
  t.equal(runToolSync('ctr-rm', ['--root', root, '-f', started.id]).code, 0);

  const bad = await job(['--keep', 'soon'], ['true']);
  t.equal(bad.code, 2, 'a bad duration is a usage error');
});
