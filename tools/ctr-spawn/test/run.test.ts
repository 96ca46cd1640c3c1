/**
 * Real containers with runc from the busybox fixture: what the image config
 * and flags turn into inside the container, and what every run leaves behind.
 */
import t from 'tap';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';
import { processAlive } from '@conveyor/lib-common/lock';
import { containerDirs, conveyorCgroups, ctrSpawn, mountsUnder } from './helpers.js';

const root = tempStore('conveyor-ctr-');
t.teardown(() => removeStore(root));
const cfg = busyboxRootfs(root, 'cfg');
const latest = busyboxRootfs(root, 'latest');

/** Nothing of a finished run may remain: mounts, container dirs, runc state, cgroups. */
function assertClean(t: Tap.Test, shortId?: string) {
  t.strictSame(mountsUnder(root), [], 'no mounts left under the store');
  t.strictSame(containerDirs(root), [], 'no container dirs left');
  if (shortId) {
    t.strictSame(
      conveyorCgroups().filter((d) => d.includes(`/conveyor/${shortId}`)),
      [],
      'no cgroup dirs left',
    );
    t.notOk(existsSync('/run/conveyor-runc') && readdirSync('/run/conveyor-runc').some((e) => e.startsWith(shortId)), 'no runc state left');
  }
}

t.test('image config: user, workdir, env, entrypoint + cmd', async (t) => {
  const r = await ctrSpawn(cfg, []);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '1000\n/home/app\nbar\n', 'id -u; pwd; echo $FOO from the cfg image');
  assertClean(t);
});

t.test('flags override the image config', async (t) => {
  // [flags, command, expected stdout]
  const cases: [string[], string[], string][] = [
    [[], ['id -u; id -g; id -G'], '1000\n1000\n1000 50\n'],
    [['-u', 'root'], ['id -u; echo $HOME'], '0\n/root\n'],
    [['-u', '1000:50'], ['id -u; id -g'], '1000\n50\n'],
    [['-u', 'app:staff'], ['id -g'], '50\n'],
    [['-u', '4242'], ['id -u; id -g; echo $HOME'], '4242\n0\n/\n'],
    [['-w', '/tmp/new/dir'], ['pwd'], '/tmp/new/dir\n'],
    [['-e', 'FOO=baz', '-e', 'NEW=1'], ['echo $FOO $NEW'], 'baz 1\n'],
    [['--hostname', 'box'], ['hostname; cat /etc/hostname'], 'box\nbox\n'],
    [[], ['echo $HOME; echo $PATH'], '/home/app\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n'],
  ];
  for (const [flags, command, expected] of cases) {
    const r = await ctrSpawn(cfg, [...flags, '--', ...command]);
    t.equal(r.code, 0, `${flags.join(' ')}: ${r.stderr}`);
    t.equal(r.stdout, expected, `${flags.join(' ')} ${command.join(' ')}`);
  }
  const entry = await ctrSpawn(cfg, ['--entrypoint', '/bin/echo', '--', 'plain']);
  t.equal(entry.stdout, 'plain\n', '--entrypoint replaces the image entrypoint');
  const cleared = await ctrSpawn(cfg, ['--entrypoint', '', '--', 'echo', 'no', 'entrypoint']);
  t.equal(cleared.stdout, 'no entrypoint\n', "--entrypoint '' clears it");
  assertClean(t);
});

t.test('env file and -e KEY from our environment', async (t) => {
  const dir = t.testdir({ 'env.list': '# comment\nA=from-file\nB=file\n\nPASSED\n' });
  process.env.PASSED = 'from-host';
  const r = await ctrSpawn(latest, ['--env-file', join(dir, 'env.list'), '-e', 'B=flag', '-e', 'PASSED', '--', 'sh', '-c', 'echo $A $B $PASSED']);
  delete process.env.PASSED;
  t.equal(r.stdout, 'from-file flag from-host\n', r.stderr);
});

t.test('isolation: pid 1, few processes, own hostname, host filesystem unreachable', async (t) => {
  const sentinel = join('/tmp', `conveyor-sentinel-${process.pid}`);
  writeFileSync(sentinel, 'host secret');
  t.teardown(() => rmSync(sentinel, { force: true }));
  const r = await ctrSpawn(latest, [
    '--net',
    'private',
    '--',
    'sh',
    '-c',
    `echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo; ps -o pid | wc -l; hostname; test -e ${sentinel} && echo visible || echo hidden; ls /sys/class/net; cat /sys/class/net/lo/flags`,
  ]);
  t.equal(r.code, 0, r.stderr);
  const [pid, cmdline, psLines, hostname, sentinelSeen, ...net] = r.stdout.trim().split('\n');
  t.equal(pid, '1', 'the command is pid 1');
  t.match(cmdline, /^sh -c /, '/proc/1 is the command');
  t.ok(Number(psLines) <= 4, `ps sees only the container (${psLines} lines)`);
  t.match(hostname, /^[a-f0-9]{12}$/, 'hostname is the short container id');
  t.equal(sentinelSeen, 'hidden', 'a host file is not visible');
  t.strictSame(net.slice(0, -1), ['lo'], 'only loopback in the network namespace');
  t.ok((Number(net.at(-1)) & 1) === 1, 'lo is up');
  assertClean(t, hostname);
});

t.test("Docker's default capabilities, new privileges allowed (setuid works), masked /proc paths", async (t) => {
  const r = await ctrSpawn(latest, [
    '--',
    'sh',
    '-c',
    'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status; grep -c " /proc/keys " /proc/mounts; grep " /proc/sys " /proc/mounts',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /CapEff:\s+00000000a80425fb/, 'the 14 default capabilities');
  t.match(r.stdout, /NoNewPrivs:\s+0/, 'no_new_privs off, as Docker (su, sudo, setuid helpers work)');
  t.match(r.stdout, /^1$/m, '/proc/keys is masked (a mount over it)');
  t.match(r.stdout, /^proc \/proc\/sys proc ro,/m, '/proc/sys is read-only');
  const dropped = await ctrSpawn(latest, ['--cap-drop', 'ALL', '--cap-add', 'chown', '--', 'grep', 'CapEff', '/proc/self/status']);
  t.match(dropped.stdout, /CapEff:\s+0000000000000001/, '--cap-drop ALL --cap-add chown');
  const privileged = await ctrSpawn(latest, ['--privileged', '--', 'sh', '-c', 'grep NoNewPrivs /proc/self/status; grep -c " /proc/keys " /proc/mounts']);
  t.match(privileged.stdout, /NoNewPrivs:\s+0\n0\n/, '--privileged: no masks, privileges allowed');
});

t.test("seccomp: Docker's blocked syscalls, unblocked by their capability or unconfined", async (t) => {
  const probe = ['--', 'sh', '-c', 'busybox unshare -U true 2>/dev/null && echo unshare-allowed || echo unshare-blocked; grep Seccomp: /proc/self/status'];
  // [flags, expected unshare outcome, seccomp mode in /proc/self/status (2 = filter)]
  const cases: [string[], string, string][] = [
    [[], 'unshare-blocked', '2'],
    [['--cap-add', 'SYS_ADMIN'], 'unshare-allowed', '2'],
    [['--security-opt', 'seccomp=unconfined'], 'unshare-allowed', '0'],
    [['--privileged'], 'unshare-allowed', '0'],
  ];
  for (const [flags, outcome, mode] of cases) {
    const r = await ctrSpawn(latest, [...flags, ...probe]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, new RegExp(`^${outcome}\nSeccomp:\\s+${mode}\n$`), flags.join(' ') || 'default');
  }
  const bad = await ctrSpawn(latest, ['--security-opt', 'apparmor=x', '--', 'true']);
  t.equal(bad.code, 125, 'an unsupported --security-opt fails before running');
  assertClean(t);
});

t.test('exit codes', async (t) => {
  // [flags, command, exit code, stderr pattern]
  const cases: [string[], string[], number, RegExp][] = [
    [[], ['true'], 0, /^$/],
    [[], ['sh', '-c', 'exit 7'], 7, /^$/],
    [[], ['/etc/passwd'], 126, /permission denied/],
    [[], ['/bin'], 126, /is a directory/],
    [[], ['no-such-command'], 127, /executable file not found/],
    [[], ['/no/such/file'], 127, /no such file/],
    [['--init'], ['sh', '-c', 'kill -9 $$'], 137, /^$/],
    [[], ['sh', '-c', "sh -c 'kill -9 $$'; exit $?"], 137, /Killed|^$/],
    [['--bogus-flag'], ['true'], 125, /unknown flag/],
    [['-u', 'nobody-here'], ['true'], 125, /unable to find user nobody-here/],
    [['--runtime', '/nonexistent/runc'], ['true'], 125, /runtime .* not found/],
    [['-m', 'lots'], ['true'], 125, /not a size/],
    [[], [], 0, /^$/], // the image's Cmd: sh with stdin /dev/null exits 0
  ];
  for (const [flags, command, code, stderr] of cases) {
    const r = await ctrSpawn(latest, [...flags, ...(command.length ? ['--', ...command] : [])]);
    t.equal(r.code, code, `${[...flags, ...command].join(' ') || '(image cmd)'} exits ${code}`);
    t.match(r.stderr, stderr, `${[...flags, ...command].join(' ')}: stderr`);
  }
  const noCmd = await ctrSpawn({ ...latest, config: { ...latest.config, Cmd: undefined } }, []);
  t.equal(noCmd.code, 125, 'no command at all: 125');
  assertClean(t);
});

t.test('volumes and tmpfs', async (t) => {
  const host = t.testdir({ 'in.txt': 'from host\n' });
  const created = join(host, 'created', 'later');
  const r = await ctrSpawn(latest, [
    '-v',
    `${host}:/data`,
    '-v',
    `${host}:/ro:ro`,
    '-v',
    `${created}:/made`,
    '-v',
    `${join(host, 'in.txt')}:/etc/motd:ro`,
    '--tmpfs',
    '/scratch:size=1m',
    '--',
    'sh',
    '-c',
    'cat /data/in.txt; echo written > /data/out.txt; echo x > /ro/fail.txt || echo ro-refused; touch /made/f && echo made; cat /etc/motd; echo t > /scratch/t && grep /scratch /proc/mounts',
  ]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^from host\n/);
  t.equal(readFileSync(join(host, 'out.txt'), 'utf8'), 'written\n', 'rw volume writes reach the host');
  t.match(r.stdout, /ro-refused/, 'ro volume refuses writes');
  t.notOk(existsSync(join(host, 'fail.txt')));
  t.ok(existsSync(join(created, 'f')), 'missing host dir was created');
  t.match(r.stdout, /made\nfrom host\n/, 'an existing host file is bound as a file');
  t.match(r.stdout, /tmpfs \/scratch tmpfs rw,nosuid,nodev,noexec.*size=1024k/, 'tmpfs with default and given options');
  assertClean(t);
});

t.test('--read-only root', async (t) => {
  const r = await ctrSpawn(latest, [
    '--read-only',
    '--tmpfs',
    '/tmp',
    '--',
    'sh',
    '-c',
    'touch /x 2>/dev/null && echo wrote || echo refused; touch /tmp/ok && echo tmp-ok',
  ]);
  t.equal(r.stdout, 'refused\ntmp-ok\n', r.stderr);
});

t.test('--print-spec prints one config.json line and runs nothing', async (t) => {
  const r = await ctrSpawn(cfg, ['--print-spec', '-m', '32m', '--pids-limit', '50', '--cpus', '0.5', '-v', '/tmp:/host-tmp:ro']);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines.length, 1);
  const spec = JSON.parse(lines[0]);
  t.equal(spec.ociVersion, '1.0.2');
  t.strictSame(spec.process.args, ['/bin/sh', '-c', 'id -u; pwd; echo $FOO']);
  t.strictSame(spec.process.user, { uid: 1000, gid: 1000, additionalGids: [1000, 50] }, 'the primary group among the supplementary ones, as Docker');
  t.equal(spec.process.cwd, '/home/app');
  t.ok(spec.process.env.includes('FOO=bar'));
  t.ok(spec.process.env.includes('HOME=/home/app'));
  t.equal(spec.process.noNewPrivileges, false, 'as Docker');
  t.equal(spec.process.capabilities.bounding.length, 14);
  t.ok(spec.process.rlimits[0].hard <= 1048576);
  t.match(spec.linux.cgroupsPath, /^\/conveyor\/[a-f0-9]{64}$/);
  t.strictSame(spec.linux.resources.memory, { limit: 32 * 1024 * 1024, swap: 64 * 1024 * 1024 }, 'as much swap again, as Docker');
  t.strictSame(spec.linux.resources.pids, { limit: 50 });
  t.strictSame(spec.linux.resources.cpu, { quota: 50000, period: 100000 });
  t.strictSame(spec.linux.namespaces.map((n: { type: string }) => n.type).sort(), ['cgroup', 'ipc', 'mount', 'network', 'pid', 'uts']);
  t.ok(spec.linux.maskedPaths.includes('/proc/kcore'));
  t.equal(spec.linux.seccomp.defaultAction, 'SCMP_ACT_ERRNO', 'seccomp: an allowlist');
  t.notOk(
    spec.linux.seccomp.syscalls.some((r: { names: string[] }) => r.names.includes('keyctl')),
    'keyctl is not allowed',
  );
  t.ok(spec.mounts.some((m: { destination: string; options: string[] }) => m.destination === '/host-tmp' && m.options.includes('ro')));
  assertClean(t);

  const edited = { ...spec, process: { ...spec.process, args: ['/bin/echo', 'edited'] } };
  const specFile = join(t.testdir(), 'spec.json');
  writeFileSync(specFile, JSON.stringify(edited));
  const run = await ctrSpawn(cfg, ['--spec', specFile]);
  t.equal(run.stdout, 'edited\n', `--spec runs the edited spec ${run.stderr}`);
  assertClean(t);
});

t.test('a mount record from overlay-mount runs and stays mounted', async (t) => {
  const mounted = await runTool('overlay-mount', [], { input: JSON.stringify(latest) + '\n' });
  t.equal(mounted.code, 0, mounted.stderr);
  const mount = JSON.parse(mounted.stdout);
  const r = await ctrSpawn(mount, ['--', 'sh', '-c', 'echo kept > /state.txt; hostname']);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `${mount.id.slice(0, 12)}\n`, "the mount record's id is the container id");
  t.ok(mountsUnder(mount.target).length > 0, 'overlay still mounted');
  t.equal(readFileSync(join(mount.target, 'state.txt'), 'utf8'), 'kept\n', 'writes stay in the overlay');
  t.notOk(existsSync(join(mount.containerDir, 'config.json')), 'bundle files removed');
  const again = await ctrSpawn(mount, ['--', 'cat', '/state.txt']);
  t.equal(again.stdout, 'kept\n', "a second run sees the first one's writes");
  const down = await runTool('overlay-mount', ['--unmount'], { input: mounted.stdout });
  t.equal(down.code, 0, down.stderr);
  assertClean(t);
  const gone = await ctrSpawn(mount, ['--', 'true']);
  t.equal(gone.code, 125, 'an unmounted mount record is refused');
  t.match(gone.stderr, /not mounted/);
});

t.test('--keep keeps the container dir (unmounted) with the upper dir', async (t) => {
  const r = await ctrSpawn(latest, ['--keep', '--', 'sh', '-c', 'echo x > /kept; hostname']);
  t.equal(r.code, 0, r.stderr);
  const short = r.stdout.trim();
  const dirs = containerDirs(root).filter((d) => d.startsWith(short));
  t.equal(dirs.length, 1);
  t.strictSame(mountsUnder(root), [], 'unmounted');
  t.ok(existsSync(join(root, 'containers', dirs[0], 'upper', 'kept')), 'the changes are in upper/');
  rmSync(join(root, 'containers', dirs[0]), { recursive: true });
});

t.test('-d runs in the background under a supervisor and prints a container record; --rm removes it when it ends', async (t) => {
  const r = await ctrSpawn(latest, ['-d', '--rm', '--name', 'bg', '--', 'sh', '-c', 'echo started; sleep 30']);
  t.equal(r.code, 0, r.stderr);
  const record = JSON.parse(r.stdout);
  t.equal(record.type, 'container');
  t.equal(record.status, 'running');
  t.equal(record.name, 'bg');
  t.ok(record.pid > 1);
  const state = JSON.parse(readFileSync(join(record.bundle, 'state.json'), 'utf8'));
  t.equal(state.runtimeRoot, '/run/conveyor-runc');
  t.equal(state.ephemeralMount, true);
  t.equal(state.autoRemove, true);
  t.ok(state.supervisor.pid > 1 && state.supervisor.pid !== record.pid, 'a supervisor owns it');
  for (let i = 0; i < 50 && !readFileSync(state.log, 'utf8').includes('started'); i++) await new Promise((r) => setTimeout(r, 100));
  t.match(JSON.parse(readFileSync(state.log, 'utf8').split('\n')[0]), { log: 'started\n', stream: 'stdout' }, 'output goes to ctr.log as json-file entries');
  const { execFileSync } = await import('node:child_process');
  execFileSync('runc', ['--root', state.runtimeRoot, 'kill', record.id, 'KILL']);
  // The supervisor removes it (name last) and exits.
  for (let i = 0; i < 100 && processAlive(state.supervisor.pid, state.supervisor.startTime); i++) await new Promise((r) => setTimeout(r, 100));
  t.notOk(existsSync(record.bundle), 'removed');
  t.notOk(existsSync(join(root, 'names', 'bg')), 'the name is released');
  assertClean(t, record.id.slice(0, 12));
});

t.test('-i passes stdin when the record comes from --record', async (t) => {
  const file = join(t.testdir(), 'rootfs.json');
  writeFileSync(file, JSON.stringify(latest) + '\n');
  const r = await runTool('ctr-spawn', ['--record', file, '-i', '--', 'sh', '-c', 'cat; echo end'], { input: 'typed input\n' });
  t.equal(r.stdout, 'typed input\nend\n', r.stderr);
  const noStdin = await runTool('ctr-spawn', ['--record', file, '--', 'sh', '-c', 'cat; echo end'], { input: 'ignored\n' });
  t.equal(noStdin.stdout, 'end\n', 'without -i, stdin is /dev/null');
});

t.test('a run without -i or -t does not ask whether stdin is a terminal: node:tty (with net and stream) is not loaded for it', async (t) => {
  const dir = t.testdir();
  const file = join(dir, 'rootfs.json');
  writeFileSync(file, JSON.stringify(latest) + '\n');
  // A -r module is no V8 flag: the body's cache is still taken. The builtins the run loaded, on stderr at exit.
  const preload = join(dir, 'module-list.cjs');
  writeFileSync(preload, "process.on('exit', () => require('node:fs').writeSync(2, JSON.stringify(process.moduleLoadList) + '\\n'));\n");
  const { spawnSync } = await import('node:child_process');
  const run = spawnSync(process.execPath, ['-r', preload, toolPath('ctr-spawn'), '--record', file, '--', 'true'], { encoding: 'utf8', timeout: 60_000 });
  t.equal(run.status, 0, run.stderr);
  const loaded: string[] = JSON.parse(run.stderr.trim().split('\n').pop() ?? '[]');
  t.ok(loaded.includes('NativeModule vm'), 'the module list is read');
  t.notOk(loaded.includes('NativeModule tty'), 'node:tty is not loaded');
});

t.test('-t gives the container a terminal (under script(1), which provides one)', async (t) => {
  const file = join(t.testdir(), 'rootfs.json');
  writeFileSync(file, JSON.stringify(latest) + '\n');
  const { execFile } = await import('node:child_process');
  const CTR_SPAWN = toolPath('ctr-spawn');
  const command = `${process.execPath} ${CTR_SPAWN} --record ${file} -t -- sh -c 'tty; echo $TERM; exit 5'`;
  const r = await new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile('script', ['-qec', command, '/dev/null'], (error, stdout) => resolve({ code: error ? Number((error as { code?: number }).code) : 0, stdout }));
  });
  t.equal(r.code, 5, "the container's exit code comes through");
  // How many \r precede each \n is runc's timing, not ours: runc clears onlcr on the container's
  // terminal only once it has received it, while the command may already write (then both
  // terminals add a \r: every time with runc's ioctls slowed by strace).
  t.match(r.stdout, /^\/dev\/pts\/0\r*\nxterm\r*\n/, 'stdin is a terminal; TERM=xterm');
  // setsid: no controlling terminal even when the tests run from one.
  const piped = await new Promise<{ code: number; stderr: string }>((resolve) => {
    const child = execFile('setsid', ['-w', process.execPath, CTR_SPAWN, '-t', '--', 'true'], (error, _out, stderr) =>
      resolve({ code: error ? Number((error as { code?: number }).code) : 0, stderr }),
    );
    child.stdin!.end(JSON.stringify(latest) + '\n');
  });
  t.equal(piped.code, 125, 'without a terminal -t is refused');
  t.match(piped.stderr, /-t needs a terminal/);
});

t.test('--net host shares the host network namespace', async (t) => {
  const hostNet = readdirSync('/sys/class/net').sort();
  const r = await ctrSpawn(latest, ['--net', 'host', '--', 'ls', '/sys/class/net']);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(r.stdout.trim().split('\n').sort(), hostNet, "the host's interfaces");
  const bad = await ctrSpawn(latest, ['--net', 'overlay', '--', 'true']);
  t.equal(bad.code, 125, 'an unknown network (bridge is the default now: network.test.ts)');
});
