import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { runProcess, type StdioSlot, startProcess, type SubprocessResult } from '../src/subprocess.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'conveyor-subprocess-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const notExecutable = join(dir, 'not-executable');
writeFileSync(notExecutable, '#!/bin/sh\nexit 0\n');
chmodSync(notExecutable, 0o644);

/** What a result says, without the collected output (a child without pipes has none). */
const outcome = (r: SubprocessResult) => ({
  failed: r.failed,
  exitCode: r.exitCode,
  signal: r.signal,
  code: r.code,
  shortMessage: r.shortMessage,
  originalMessage: r.originalMessage,
});

// Each program run twice: with no pipes (Node's process handle: startDirect) and with stdout piped
// (node:child_process): the two must report the same outcome.
const cases: { name: string; file: string; args: string[] }[] = [
  { name: 'exit 0', file: 'true', args: [] },
  { name: 'exit 3', file: 'sh', args: ['-c', 'exit 3'] },
  { name: 'killed by a signal', file: 'sh', args: ['-c', 'kill -TERM $$'] },
  { name: 'not on PATH', file: 'conveyor-no-such-program', args: [] },
  { name: 'no such path', file: join(dir, 'missing'), args: ['x'] },
  { name: 'not executable', file: notExecutable, args: [] },
];
for (const c of cases) {
  t.test(`${c.name}: the same outcome with and without node:child_process`, async (t) => {
    const direct = await runProcess(c.file, c.args, { stdout: 'ignore', stderr: 'ignore' });
    const piped = await runProcess(c.file, c.args, { stdout: 'pipe', stderr: 'ignore' });
    t.strictSame(outcome(direct), outcome(piped));
    t.equal(direct.command, [c.file, ...c.args].join(' '));
  });
}

t.test('a child without pipes: its stdio are the fds given, env and cwd as given, own session when detached', async (t) => {
  const out = join(dir, 'out');
  const fd = openSync(out, 'w');
  try {
    const slots: [StdioSlot, StdioSlot] = [fd, 'ignore'];
    const result = await runProcess('sh', ['-c', 'echo "$GREETING $(pwd)"; echo "$1"; cut -d" " -f6 /proc/self/stat; echo $$', 'sh', '$(touch pwned); `x`'], {
      stdout: slots[0],
      stderr: slots[1],
      env: { GREETING: 'hello', PATH: '/usr/bin:/bin' },
      cwd: dir,
      detached: true,
    });
    t.equal(result.exitCode, 0);
  } finally {
    closeSync(fd);
  }
  const [greeting, arg, session, pid] = readFileSync(out, 'utf8').trim().split('\n');
  t.equal(greeting, `hello ${dir}`);
  t.equal(arg, '$(touch pwned); `x`', 'arguments reach the program as given, no shell');
  t.equal(session, pid, 'a detached child leads its own session');
});

t.test('a running child without pipes: onSpawn sees its pid, kill signals it, exitCode stays null when killed', async (t) => {
  let spawned: number | undefined;
  const child = startProcess('sleep', ['30'], { stdout: 'ignore', stderr: 'ignore', onSpawn: (c) => (spawned = c.pid) });
  t.ok(child.pid && child.pid > 0);
  t.equal(spawned, child.pid, 'onSpawn called with the running child');
  t.equal(child.exitCode, null);
  t.equal(child.kill('SIGTERM'), true);
  const result = await child.result;
  t.equal(result.signal, 'SIGTERM');
  t.equal(child.exitCode, null);
  t.equal(child.kill('SIGTERM'), false, 'nothing to signal once it has exited');
  const done = startProcess('sh', ['-c', 'exit 7'], { stdout: 'ignore', stderr: 'ignore' });
  await done.result;
  t.equal(done.exitCode, 7);
});

t.test('a child without pipes starts without loading node:child_process', async (t) => {
  const module = fileURLToPath(new URL('../dist/subprocess.js', import.meta.url));
  const script = `
    const { runProcess } = await import(${JSON.stringify(module)});
    const r = await runProcess('true', [], { stdout: 'ignore', stderr: 'ignore' });
    const loaded = () => process.moduleLoadList.includes('NativeModule child_process');
    const before = loaded();
    await runProcess('true', [], { stdout: 'pipe' });
    console.log(JSON.stringify({ code: r.exitCode, before, after: loaded() }));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script]);
  t.strictSame(JSON.parse(stdout), { code: 0, before: false, after: true });
});
