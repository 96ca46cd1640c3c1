/**
 * The store lock under contention: many processes, holders killed with
 * SIGKILL while holding, stale claims planted; never two holders at once,
 * never wedged.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireLock, tokenAlive } from '../src/lock.js';

const distLock = process.env.CONVEYOR_TEST_LOCK_MODULE ?? fileURLToPath(new URL('../dist/lock.js', import.meta.url));

function node(script: string, args: string[]): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script, ...args], (error, _stdout, stderr) => {
      resolve({
        code: error ? ((error as { code?: number }).code ?? null) : 0,
        signal: error ? ((error as { signal?: string }).signal ?? null) : null,
        stderr,
      });
    });
  });
}

// Increments a counter file under the lock, read and write apart so two
// holders at once would lose updates; a second holder is also caught in the act
// by a marker file only one holder may create.
const worker = `
  import { acquireLock } from ${JSON.stringify(distLock)};
  import { readFileSync, writeFileSync, openSync, closeSync, unlinkSync } from 'node:fs';
  const [lockPath, counter, marker, times, crash] = process.argv.slice(1);
  for (let i = 0; i < Number(times); i++) {
    const lock = await acquireLock(lockPath, { timeoutMs: 120000 });
    if (crash === 'crash') process.kill(process.pid, 'SIGKILL');
    closeSync(openSync(marker, 'wx'));
    const n = Number(readFileSync(counter, 'utf8'));
    await new Promise((r) => setTimeout(r, Math.random() * 2));
    writeFileSync(counter, String(n + 1));
    unlinkSync(marker);
    await lock.release();
  }`;

// A dead process's token: a pid above pid_max.
const DEAD = '4194305.1.00ff';

t.test('20 processes x 50 increments, with holders killed while holding and stale claims planted: the count is exact', async (t) => {
  const dir = t.testdir();
  const lockPath = join(dir, 'count.lock');
  const counter = join(dir, 'counter');
  const marker = join(dir, 'held');
  writeFileSync(counter, '0');
  // A stale claim from a crashed holder, in place before anyone starts.
  mkdirSync(lockPath);
  writeFileSync(join(lockPath, DEAD), '');
  const crashers: Promise<unknown>[] = [];
  const workers = Array.from({ length: 20 }, () => node(worker, [lockPath, counter, marker, '50', '']));
  // Holders that die holding the lock (kill -9): each leaves a stale lock every waiter races to break.
  for (let i = 0; i < 15; i++) {
    await new Promise((r) => setTimeout(r, 40));
    crashers.push(node(worker, [lockPath, counter, marker, '1', 'crash']));
  }
  const results = await Promise.all(workers);
  for (const r of (await Promise.all(crashers)) as { signal: string | null }[]) t.equal(r.signal, 'SIGKILL', 'a holder died holding the lock');
  for (const r of results) t.equal(r.code, 0, r.stderr.slice(0, 500));
  t.equal(readFileSync(counter, 'utf8'), '1000', 'no increment lost: never two holders at once');
  t.strictSame(
    readdirSync(dir).filter((n) => n.startsWith('.count.lock.')),
    [],
    'no staging dirs left',
  );
});

t.test("a dead holder's claim is broken; a live one waits; release frees it", async (t) => {
  const path = join(t.testdir(), 'x.lock');
  mkdirSync(path);
  writeFileSync(join(path, DEAD), '');
  const lock = await acquireLock(path, { timeoutMs: 2000 });
  const entries = readdirSync(path);
  t.equal(entries.length, 1);
  t.match(entries[0], new RegExp(`^${process.pid}\\.`));
  t.ok(tokenAlive(entries[0]));
  t.notOk(tokenAlive(DEAD));
  t.notOk(tokenAlive(`${process.pid}.1.ab`), 'our pid with another start time is a recycled pid: dead');
  await lock.release();
});
