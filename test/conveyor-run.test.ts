/**
 * conveyor-run (scripts/run.mjs): docker run composed from img-fetch,
 * layer-unpack and ctr-spawn. Its flags are ctr-spawn's own list
 * (tools/ctr-spawn/src/flags.ts) and are checked by ctr-spawn --check-flags
 * before anything is pulled; the common flags reach every tool; -d with
 * --restart is run again by the supervisor; Ctrl-C (through a real pty,
 * script(1)) stops the container and ends the run with 130. One store with
 * busybox for the whole file; with --pull=missing (the default) no registry
 * is asked for it.
 */
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { busyboxLayout, importToStore, REPO_ROOT } from './helpers/fixtures.js';
import { removeStore, tempStore } from './helpers/rootfs.js';
import { deleteAllContainers, leftoversOf, waitForState } from './helpers/containers.js';
import { toolPath } from './helpers/tools.js';

const exec = promisify(execFile);
const RUN_SCRIPT = join(REPO_ROOT, 'scripts', 'run.mjs');

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs conveyor-run with `args`; never throws for a non-zero exit. */
async function conveyorRun(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [RUN_SCRIPT, ...args], { env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const root = tempStore('conveyor-run-');
importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/alpine:latest');
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
});

/** Processes whose command line names our store: a ctr-spawn, supervisor or tool left behind. */
function processesOfStore(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.includes(root) && !cmdline.includes('script ')) found.push(`${pid} ${cmdline}`);
    } catch {
      // gone
    }
  }
  return found;
}

t.test('--print-spec before the image is a switch: the image stays the image, the rest is the command', async (t) => {
  const result = await conveyorRun(['--root', root, '--print-spec', 'alpine', 'echo', 'hi']);
  t.equal(result.code, 0, `conveyor-run exits 0 ${result.stderr}`);
  const spec = JSON.parse(result.stdout);
  t.strictSame(spec.process.args, ['echo', 'hi'], 'the words after the image are the command');
  t.equal(spec.annotations['org.opencontainers.image.ref.name'], 'docker.io/library/alpine:latest', 'alpine is the image');
});

t.test('the flag set passes through: -e, --env-file, -w, -u, -m, --cpus, --name, --rm reach the container', async (t) => {
  const envFile = join(root, 'run.env');
  writeFileSync(envFile, 'FROM_FILE=yes\n');
  const result = await conveyorRun([
    '--root',
    root,
    '-e',
    'GREETING=hi',
    '--env-file',
    envFile,
    '-w',
    '/tmp',
    '-u',
    '1000:1000',
    '-m',
    '64m',
    '--cpus',
    '0.5',
    '--name',
    'passes',
    'busybox',
    'sh',
    '-c',
    'echo "$GREETING $FROM_FILE $(pwd) $(id -u):$(id -g) $(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"',
  ]);
  t.equal(result.code, 0, `exits 0 ${result.stderr}`);
  t.equal(result.stdout, `hi yes /tmp 1000:1000 ${64 * 1024 * 1024}\n`, 'environment, working directory, user and memory limit as asked');
  t.equal(result.stderr, '', 'nothing on stderr off a terminal for a present image');
});

t.test('-d, --name and --rm pass through to ctr-spawn: a container record comes out and the container runs detached', async (t) => {
  // It runs until the test has followed its log (a fixed sleep lost the race to --rm on a loaded machine).
  const sync = t.testdir();
  const result = await conveyorRun([
    '--root',
    root,
    '-d',
    '--rm',
    '--name',
    'bg',
    '-v',
    `${sync}:/sync`,
    'busybox',
    'sh',
    '-c',
    'echo from-bg; while [ ! -e /sync/go ]; do sleep 0.1; done',
  ]);
  t.equal(result.code, 0, `conveyor-run exits 0 ${result.stderr}`);
  const record = JSON.parse(result.stdout);
  t.match(record, { type: 'container', name: 'bg', status: 'running', image: 'docker.io/library/busybox:latest' });
  const follower = spawn(process.execPath, ['--', toolPath('ctr-logs'), '--root', root, '-f', record.id], { stdio: ['ignore', 'pipe', 'pipe'] });
  let followed = '';
  follower.stdout.on('data', (chunk) => {
    followed += chunk;
    if (followed.includes('from-bg\n')) writeFileSync(join(sync, 'go'), '');
  });
  const code = await new Promise((resolve) => follower.on('close', resolve));
  t.equal(code, 0, 'ctr-logs -f ends when the container does');
  t.equal(followed, 'from-bg\n', 'its output is in its log');
  // --rm: the supervisor removes it once it has ended.
  for (let i = 0; i < 100 && existsSync(record.bundle); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  t.notOk(existsSync(record.bundle), 'removed when it ended');
});

t.test('bad flags are refused before anything is pulled: exit 125 and no connection to the registry', async (t) => {
  // Counts every connection and answers 404 at once (no retries): a registry that has nothing.
  let connections = 0;
  const server = createServer((_request, response) => {
    response.writeHead(404, { 'content-type': 'application/json', connection: 'close' }).end('{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}');
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as { port: number }).port;
  const image = `127.0.0.1:${port}/app:v1`;
  // ctr-spawn's own tests cover its parser; these show that conveyor-run asks it (and checks its own) first.
  const cases: [string[], RegExp][] = [
    [['--memory', 'lots'], /memory/],
    [['--restart', 'always'], /--restart needs -d/],
    [['-d', '--rm', '--restart', 'always'], /--restart and --rm/],
    [['--bogus'], /unknown flag --bogus/],
    [['--pull', 'sometimes'], /--pull must be always, missing or never/],
  ];
  const results = await Promise.all(cases.map(([flags]) => conveyorRun(['--root', root, '--plain-http', ...flags, image, 'true'])));
  cases.forEach(([flags, message], i) => {
    t.equal(results[i].code, 125, `${flags.join(' ')}: exit 125`);
    t.match(results[i].stderr, message, `${flags.join(' ')}: says why`);
  });
  t.equal(connections, 0, 'the registry was never contacted');
  // The same reference with good flags does reach it: the check above could fail.
  const good = await conveyorRun(['--root', root, '--plain-http', '--pull', 'always', image, 'true']);
  t.not(good.code, 0, `the pull fails: the registry has no such image ${good.stderr}`);
  t.ok(connections > 0, 'and was attempted');
});

t.test('--pull never with a missing image: img-fetch fails, nothing runs, its exit code is the answer', async (t) => {
  const result = await conveyorRun(['--root', root, '--pull', 'never', '--log-format', 'json', 'localhost:1/absent:v1', 'echo', 'ran']);
  t.not(result.code, 0, 'fails');
  t.notMatch(result.stdout, /^ran$/m, 'the command did not run');
  const lines = result.stderr.trim().split('\n');
  const logs = lines.map((line) => JSON.parse(line));
  t.ok(
    logs.some((l) => l.tool === 'img-fetch'),
    '--log-format=json reached img-fetch: every stderr line is JSON',
  );
});

t.test('-q silences every tool: no progress even when asked for bars, no "reused" line', async (t) => {
  const loud = await conveyorRun(['--root', root, '--progress', 'bar', 'busybox', 'echo', 'hi']);
  t.equal(loud.stdout, 'hi\n');
  t.match(loud.stderr, /reused/, 'without -q layer-unpack reports the reused layer in bar mode');
  const quiet = await conveyorRun(['--root', root, '--progress', 'bar', '-q', 'busybox', 'echo', 'hi']);
  t.equal(quiet.code, 0);
  t.equal(quiet.stdout, 'hi\n', 'the container output');
  t.equal(quiet.stderr, '', 'nothing else');
});

t.test('on a terminal a run of a present image prints nothing but the container output', async (t) => {
  const { stdout } = await exec('script', ['-qec', `${process.execPath} ${RUN_SCRIPT} --root ${root} busybox echo hi`, '/dev/null']);
  // Terminal control sequences (a cleared line) are not output.
  const csi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, 'g');
  const visible = stdout.replace(csi, '').replace(/\r/g, '');
  t.equal(visible, 'hi\n');
});

t.test('--help and --version', async (t) => {
  const help = await conveyorRun(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /Usage: conveyor-run/);
  t.match(help.stdout, /--restart/);
  const version = await conveyorRun(['--version']);
  t.equal(version.code, 0);
  t.match(version.stdout, /^conveyor-run \d+\.\d+\.\d+\n$/);
  const none = await conveyorRun(['--root', root]);
  t.equal(none.code, 125, 'no image: 125, as docker run');
});

t.test('--restart on-failure:2: run three times, restartCount 2, then exited with the code', async (t) => {
  const result = await conveyorRun(['--root', root, '-d', '--restart', 'on-failure:2', 'busybox', 'sh', '-c', 'echo run; exit 3']);
  t.equal(result.code, 0, result.stderr);
  const { id } = JSON.parse(result.stdout);
  const state = await waitForState(root, id, (s) => s?.status === 'exited' && s.restartCount === 2, 20_000);
  t.match(state, { status: 'exited', exitCode: 3, restartCount: 2, restartPolicy: { name: 'on-failure', maximumRetryCount: 2 } });
  // The supervisor ends once it gives up: nothing restarts it a third time.
  const supervisor = state?.supervisor?.pid;
  for (let i = 0; i < 200 && supervisor && existsSync(`/proc/${supervisor}`); i++) await new Promise((r) => setTimeout(r, 50));
  const logs = await exec(process.execPath, [toolPath('ctr-logs'), '--root', root, id]);
  t.equal(logs.stdout, 'run\nrun\nrun\n', 'the log holds all three runs');
  t.equal(JSON.parse(readFileSync(join(root, 'containers', id, 'state.json'), 'utf8')).restartCount, 2, 'still 2 once the supervisor is gone');
});

t.test('--restart always: restarted when it ends by itself, not after ctr-stop', async (t) => {
  const result = await conveyorRun([
    '--root',
    root,
    '-d',
    '--restart',
    'always',
    '--name',
    'always',
    'busybox',
    'sh',
    '-c',
    'trap "exit 0" TERM; sleep 0.3; while :; do sleep 0.1; done',
  ]);
  t.equal(result.code, 0, result.stderr);
  const { id } = JSON.parse(result.stdout);
  // An end it did not ask for: its process killed from outside.
  const first = await waitForState(root, id, (s) => s?.status === 'running' && Boolean(s.pid));
  process.kill(first!.pid, 'SIGKILL');
  const again = await waitForState(root, id, (s) => s?.status === 'running' && s.restartCount === 1 && Boolean(s.pid));
  t.match(again, { status: 'running', restartCount: 1 }, 'an end it did not ask for is restarted');
  const stop = await exec(process.execPath, [toolPath('ctr-stop'), '--root', root, '-t', '5', 'always']);
  t.match(stop.stdout, /always|"type":"container"/);
  const stopped = await waitForState(root, id, (s) => s?.status === 'exited');
  t.match(stopped, { status: 'exited', stoppedByUser: true, restartCount: 1 });
  const supervisor = stopped?.supervisor?.pid;
  for (let i = 0; i < 200 && supervisor && existsSync(`/proc/${supervisor}`); i++) await new Promise((r) => setTimeout(r, 50));
  t.notOk(supervisor && existsSync(`/proc/${supervisor}`), 'its supervisor has ended: no restart is coming');
  t.match(JSON.parse(readFileSync(join(root, 'containers', id, 'state.json'), 'utf8')), { status: 'exited', restartCount: 1 }, 'it stays stopped');
});

t.test('--restart always: ctr-kill with another signal leaves the policy alone, ctr-kill (KILL) ends it for good', async (t) => {
  const result = await conveyorRun(['--root', root, '-d', '--restart', 'always', 'busybox', 'sleep', '60']);
  t.equal(result.code, 0, result.stderr);
  const { id } = JSON.parse(result.stdout);
  await waitForState(root, id, (s) => s?.status === 'running' && Boolean(s.pid));
  await exec(process.execPath, [toolPath('ctr-kill'), '--root', root, '-s', 'HUP', id]);
  t.notOk(JSON.parse(readFileSync(join(root, 'containers', id, 'state.json'), 'utf8')).stoppedByUser, 'HUP is not a stop');
  await exec(process.execPath, [toolPath('ctr-kill'), '--root', root, id]);
  const killed = await waitForState(root, id, (s) => s?.status === 'exited');
  t.match(killed, { status: 'exited', stoppedByUser: true, exitCode: 137 });
  const supervisor = killed?.supervisor?.pid;
  for (let i = 0; i < 200 && supervisor && existsSync(`/proc/${supervisor}`); i++) await new Promise((r) => setTimeout(r, 50));
  t.notOk(supervisor && existsSync(`/proc/${supervisor}`), 'its supervisor has ended');
  t.notOk(JSON.parse(readFileSync(join(root, 'containers', id, 'state.json'), 'utf8')).restartCount, 'never restarted');
});

/**
 * Runs conveyor-run under script(1) (a real pty), types `input` once `ready`
 * shows, then Ctrl-C; resolves to script's exit code (the command's, -e) and the output.
 */
function ctrlC(args: string[], ready: RegExp, input = ''): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', [process.execPath, RUN_SCRIPT, '--root', root, ...args].join(' '), '/dev/null'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let output = '';
    let sent = false;
    if (input) child.stdin.write(input);
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (!sent && ready.test(output)) {
        sent = true;
        child.stdin.write('\x03');
      }
    });
    child.on('close', (code) => resolve({ code, output }));
  });
}

t.test('Ctrl-C stops the container and ends the run with 130, leaving no process, container or runc state', async (t) => {
  const before = new Set(readdirSync(join(root, 'containers')));
  const [interactive, plain] = await Promise.all([
    // An interactive shell (pid 1, ignoring SIGINT) reading the terminal.
    ctrlC(['-i', 'busybox', 'sh'], /^42\r?$/m, 'echo $((40+2))\n'),
    // A command that ignores SIGINT as pid 1, not reading the terminal.
    ctrlC(['busybox', 'sh', '-c', '"echo ready; sleep 60"'], /^ready\r?$/m),
  ]);
  t.equal(interactive.code, 130, `interactive sh: 130 ${interactive.output}`);
  t.equal(plain.code, 130, `sleep: 130 ${plain.output}`);
  t.strictSame(processesOfStore(), [], 'no ctr-spawn, runc or container process of the run is left');
  const added = readdirSync(join(root, 'containers')).filter((id) => !before.has(id));
  t.strictSame(
    added.flatMap((id) => leftoversOf(root, id)),
    [],
    'nothing of the containers is left',
  );
});

t.test('--env-file reaches the tools, not node (Node 20 reads it anywhere on its own command line)', async (t) => {
  // Run through the shebangs, as a user does: `#!/usr/bin/env -S node --` ends node's own options.
  const missing = '/nonexistent/conveyor.env';
  for (const [what, file, args] of [
    ['ctr-spawn', toolPath('ctr-spawn'), ['--check-flags', '--env-file', missing]],
    ['conveyor-run', RUN_SCRIPT, ['--env-file', missing, 'busybox', 'true']],
  ] as const) {
    const result = await exec(file, [...args]).catch((error) => error);
    t.equal(result.code, 125, `${what}: ctr-spawn's usage error, not node's exit 9`);
    t.match(result.stderr, /--env-file \/nonexistent\/conveyor\.env/, `${what}: our message names the file`);
    t.notMatch(result.stderr, /^node:/m, `${what}: node itself said nothing`);
  }
});
