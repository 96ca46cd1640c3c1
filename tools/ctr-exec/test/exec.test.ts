/**
 * ctr-exec against real runc containers: one busybox container started with
 * ctr-spawn -d (user app, workdir /home/app, FOO=bar, its own namespaces) is
 * shared by the tests, and removed with its store at the end.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';
import { removeDetached, startDetached, stillRunning } from '../../../test/helpers/containers.js';

const root = tempStore('ctr-exec-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root);
// The second one's init exits at once: a container that is no longer running.
const [ctr, ended] = await Promise.all([
  startDetached(root, rootfs, ['--name', 'web', '-u', 'app', '-w', '/home/app', '-e', 'FOO=bar'], ['sleep', '600']),
  startDetached(root, rootfs, [], ['true']),
]);
t.teardown(() => Promise.all([removeDetached(root, ctr.id), removeDetached(root, ended.id)]));

const exec = (args: string[], input?: string) => runTool('ctr-exec', ['--root', root, '--log-format=json', ...args], { input });
const errorCode = (r: { logs: Record<string, any>[] }) => r.logs.find((l) => l.level === 'error')?.code;

t.test("the command gets the container's user, working directory and environment", async (t) => {
  const r = await exec(['web', 'sh', '-c', 'id -u; id -g; pwd; echo $FOO; echo $HOME']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '1000\n1000\n/home/app\nbar\n/home/app\n');
});

t.test('-u, -w, -e and --env-file override them', async (t) => {
  const envFile = join(t.testdir(), 'env');
  writeFileSync(envFile, '# comment\nFROM_FILE=1\nFOO=file\n');
  const r = await exec(['-u', 'root', '-w', '/tmp', '--env-file', envFile, '-e', 'FOO=baz', 'web', 'sh', '-c', 'id -u; pwd; echo $FOO $FROM_FILE $HOME']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '0\n/tmp\nbaz 1 /root\n', '-e wins over --env-file; HOME follows -u');
  const numeric = await exec(['-u', '4242:50', 'web', 'sh', '-c', 'id -u; id -g']);
  t.equal(numeric.stdout, '4242\n50\n', 'a numeric uid:gid need not exist in /etc/passwd');
});

t.test('by full id, unique id prefix and name; flags after the container are the command', async (t) => {
  const queries = [ctr.id, ctr.id.slice(0, 8), 'web'];
  const runs = await Promise.all(queries.map((query) => exec([query, 'echo', '-n', query.slice(0, 3)])));
  for (const [i, r] of runs.entries()) t.equal(r.stdout, queries[i].slice(0, 3), `${queries[i].slice(0, 12)}: ${r.stderr}`);
});

t.test("exits with the command's code; 127 not found, 126 not executable (Docker's)", async (t) => {
  const [own, missing, notExecutable, killed] = await Promise.all([
    exec(['web', 'sh', '-c', 'exit 7']),
    exec(['web', 'no-such-command']),
    exec(['web', '/etc/passwd']),
    exec(['web', 'sh', '-c', 'kill -9 $$']),
  ]);
  t.equal(own.code, 7);
  t.equal(missing.code, 127);
  t.equal(errorCode(missing), 'ERR_SPAWN_COMMAND_NOT_FOUND');
  t.equal(notExecutable.code, 126);
  t.equal(errorCode(notExecutable), 'ERR_SPAWN_NOT_EXECUTABLE');
  t.equal(killed.code, 137, 'killed by SIGKILL: 128+9');
});

t.test('stdin reaches the command only with -i', async (t) => {
  const [piped, closed] = await Promise.all([exec(['-i', 'web', 'cat'], 'hi\nthere\n'), exec(['web', 'sh', '-c', 'cat; echo end'], 'ignored\n')]);
  t.equal(piped.stdout, 'hi\nthere\n', piped.stderr);
  t.equal(closed.stdout, 'end\n', 'without -i, stdin is /dev/null');
});

t.test("the command is in the container's namespaces and cgroup, with its capabilities and seccomp", async (t) => {
  const r = await exec([
    'web',
    'sh',
    '-c',
    'cat /proc/1/cmdline; echo; for ns in pid net mnt cgroup; do readlink /proc/self/ns/$ns; done; cat /proc/self/cgroup; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status',
  ]);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines[0], 'sleep\u0000600\u0000', "pid 1 is the container's init");
  const hostView = ['pid', 'net', 'mnt', 'cgroup'].map((ns) => readlinkSync(`/proc/${ctr.pid}/ns/${ns}`));
  t.strictSame(lines.slice(1, 5), hostView, "the same namespaces as the container's init");
  const cgroups = lines.filter((l) => /^\d+:[^:]*:/.test(l));
  t.ok(cgroups.length > 0, 'cgroup lines');
  for (const line of cgroups) t.match(line, /:\/$/, `${line}: at the root of the container's cgroup namespace, so in its cgroup`);
  const status = (text: string, key: string) => new RegExp(`^${key}:\\s*(\\S+)`, 'm').exec(text)?.[1];
  const init = readFileSync(`/proc/${ctr.pid}/status`, 'utf8');
  t.equal(status(r.stdout, 'CapEff'), status(init, 'CapEff'), "the container's effective capabilities");
  t.equal(status(r.stdout, 'NoNewPrivs'), status(init, 'NoNewPrivs'), "the container's no_new_privs (off by default, as Docker)");
  t.equal(status(r.stdout, 'Seccomp'), '2', 'a seccomp filter');
});

t.test('-t gives the command a terminal (under script(1), which provides one)', async (t) => {
  const command = `env -u NODE_OPTIONS ${process.execPath} ${toolPath('ctr-exec')} --root ${root} -t web sh -c 'tty; echo $TERM; exit 5'`;
  const r = await new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile('script', ['-qec', command, '/dev/null'], (error, stdout) => resolve({ code: error ? Number((error as { code?: number }).code) : 0, stdout }));
  });
  t.equal(r.code, 5, "the command's exit code comes through");
  // How many \r precede each \n is runc's timing, not ours: runc clears onlcr on the container's
  // terminal only once it has received it, while the command may already write (then both
  // terminals add a \r: seen under load, and every time with runc's ioctls slowed by strace).
  t.match(r.stdout, /\/dev\/pts\/\d+\r*\nxterm\r*\n/, 'stdin is a terminal; TERM=xterm');
  const noTerminal = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile('setsid', ['-w', process.execPath, toolPath('ctr-exec'), '--root', root, '-t', 'web', 'true'], (error, _out, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code) : 0, stderr }),
    );
  });
  t.equal(noTerminal.code, 2, 'without a terminal -t is refused');
  t.match(noTerminal.stderr, /-t needs a terminal/);
});

t.test('a signal sent to ctr-exec goes to the command; the container runs on', async (t) => {
  let sent = false;
  const r = await runTool('ctr-exec', ['--root', root, 'web', 'sh', '-c', 'echo ready; exec sleep 60'], {
    onStdout: (stdout, child) => {
      if (!sent && stdout.includes('ready')) {
        sent = true;
        child.kill('SIGTERM');
      }
    },
  });
  t.equal(r.code, 143, 'the command died of SIGTERM: 128+15');
  t.ok(await stillRunning(root, ctr.id), 'the container still runs');
});

t.test('-d starts the command and returns at once', async (t) => {
  const r = await exec(['-d', 'web', 'sh', '-c', 'echo started > /tmp/detached; sleep 30']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '', 'no output');
  const ps = await exec(['web', 'sh', '-c', 'cat /tmp/detached; ps -o comm | grep -c sleep']);
  t.equal(ps.stdout, 'started\n2\n', 'it runs beside the init');
});

t.test('refused before anything runs: unknown user, /proc working directory, relative -w', async (t) => {
  const [user, procSelf, proc, relative] = await Promise.all([
    exec(['-u', 'nobody-here', 'web', 'true']),
    exec(['-w', '/proc/self/cwd', 'web', 'true']),
    exec(['-w', '/proc', 'web', 'true']),
    exec(['-w', 'tmp', 'web', 'true']),
  ]);
  t.equal(user.code, 125);
  t.equal(errorCode(user), 'ERR_USER_NOT_FOUND');
  for (const r of [procSelf, proc]) {
    t.equal(r.code, 125, r.stderr);
    t.equal(errorCode(r), 'ERR_SPAWN_UNSAFE_WORKDIR');
  }
  t.equal(relative.code, 2);
  t.equal(errorCode(relative), 'ERR_USAGE');
});

t.test('usage errors exit 2', async (t) => {
  const cases = [['--bogus', 'web', 'true'], [], ['web'], ['-e', '=x', 'web', 'true'], ['-d', '-t', 'web', 'true']];
  const runs = await Promise.all(cases.map((args) => exec(args)));
  for (const [i, r] of runs.entries()) {
    t.equal(r.code, 2, `${cases[i].join(' ')}: ${r.stderr}`);
    t.equal(errorCode(r), 'ERR_USAGE');
  }
});

t.test('unknown, ambiguous, stateless, corrupt and stopped containers: exit 1 with a clear error', async (t) => {
  // A leftover directory sharing the first hex digit of the real id: a one-digit prefix names both.
  const leftover = ctr.id[0] + (ctr.id[1] === '0' ? '1' : '0') + ctr.id.slice(2);
  mkdirSync(join(root, 'containers', leftover), { mode: 0o700 });
  t.teardown(() => rmSync(join(root, 'containers', leftover), { recursive: true, force: true }));
  const [unknown, ambiguous, stateless] = await Promise.all([exec(['no-such-container', 'true']), exec([ctr.id[0], 'true']), exec([leftover, 'true'])]);
  t.equal(unknown.code, 1);
  t.equal(errorCode(unknown), 'ERR_CONTAINER_NOT_FOUND');
  t.match(unknown.stderr, /no such container: no-such-container/);
  t.equal(ambiguous.code, 1);
  t.equal(errorCode(ambiguous), 'ERR_CONTAINER_AMBIGUOUS');
  t.equal(stateless.code, 1);
  t.equal(errorCode(stateless), 'ERR_CONTAINER_NOT_RUNNING');

  writeFileSync(join(root, 'containers', leftover, 'state.json'), '{"id": "not json');
  const corrupt = await exec([leftover, 'true']);
  t.equal(corrupt.code, 1);
  t.equal(errorCode(corrupt), 'ERR_STORE_CORRUPT');

  // A forged state that claims to run, naming a live pid (ours) the runtime knows nothing of.
  const forged = {
    type: 'container',
    v: 1,
    id: leftover,
    status: 'running',
    pid: process.pid,
    runtime: 'runc',
    runtimeRoot: '/run/conveyor-runc',
    cgroupsPath: `/conveyor/${leftover}`,
    ephemeralMount: true,
    rootfs: '/',
    store: root,
  };
  writeFileSync(join(root, 'containers', leftover, 'state.json'), JSON.stringify(forged));
  writeFileSync(join(root, 'containers', leftover, 'config.json'), JSON.stringify({ process: { user: { uid: 0, gid: 0 }, cwd: '/', args: ['true'] } }));
  const ghost = await exec([leftover, 'true']);
  t.equal(ghost.code, 1, ghost.stderr);
  t.equal(errorCode(ghost), 'ERR_CONTAINER_NOT_RUNNING', 'the runtime has no such container');

  // Its init exits at once; wait until its state says so (observe: the process is gone).
  for (let i = 0; i < 200 && (await stillRunning(root, ended.id)); i++) await new Promise((r) => setTimeout(r, 25));
  const stopped = await exec([ended.id, 'true']);
  t.equal(stopped.code, 1);
  t.equal(errorCode(stopped), 'ERR_CONTAINER_NOT_RUNNING');
  t.match(stopped.stderr, /is not running/);
});

t.test('the process file and runtime log are removed after each exec', async (t) => {
  const files = readdirSync(join(root, 'containers', ctr.id)).filter((f) => f.startsWith('exec-'));
  t.strictSame(files, []);
});
