/** The pure parts: user resolution, safe lookups inside a rootfs, flag parsers (--log-opt too), capability sets, the state.json helpers. */
import t from 'tap';
import { mkdirSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { applyCaps, DEFAULT_CAPS, ALL_CAPS, buildSpec } from '../src/spec.js';
import { checkWorkdir, findCommand, readRootFile, resolveInRoot } from '@conveyor/lib-common/container/rootfs';
import { mergeEnv, resolveEnvEntries } from '@conveyor/lib-common/container/env';
import { parseLogOpts, parseTmpfs, parseVolume } from '../src/options.js';
import { parseGroup, parsePasswd, resolveUser, resolveUserIn } from '@conveyor/lib-common/container/user';
import { Store } from '@conveyor/lib-common/store';
import { PID_FILE } from '../src/cleanup.js';
import { containerRecordOf } from '@conveyor/lib-common/container/targets';
import { endOf, exitedState, initialState, isoTimestamp } from '../src/state.js';

const passwd = parsePasswd('root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nbroken line\nbad:x:notnum:1:::\n# comment\n');
const groups = parseGroup('root:x:0:\napp:x:1000:\nstaff:x:50:app,other\nwheel:x:10:app\n');

// [spec, uid, gid, additionalGids, home] or [spec, error pattern]
const users: ([string, number, number, number[], string] | [string, RegExp])[] = [
  ['', 0, 0, [], '/root'],
  ['root', 0, 0, [], '/root'],
  ['app', 1000, 1000, [50, 10], '/home/app'],
  ['1000', 1000, 1000, [50, 10], '/home/app'],
  ['app:staff', 1000, 50, [10], '/home/app'],
  ['app:77', 1000, 77, [50, 10], '/home/app'],
  ['4242', 4242, 0, [], '/'],
  ['4242:4343', 4242, 4343, [], '/'],
  ['ghost', /unable to find user ghost/],
  ['app:ghosts', /unable to find group ghosts/],
  ['a:b:c', /invalid user/],
  ['99999999999', /unable to find user/],
];
for (const [spec, ...expected] of users) {
  if (expected[0] instanceof RegExp) {
    t.throws(() => resolveUserIn(spec, passwd, groups), { code: 'ERR_USER_NOT_FOUND', message: expected[0] }, `user ${JSON.stringify(spec)} fails`);
  } else {
    const [uid, gid, additionalGids, home] = expected as [number, number, number[], string];
    const user = resolveUserIn(spec, passwd, groups);
    t.strictSame(
      { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids, home: user.home },
      { uid, gid, additionalGids, home },
      `user ${JSON.stringify(spec)}`,
    );
  }
}

t.test('lookups never leave the rootfs', async (t) => {
  const dir = t.testdir({
    host: { secret: 'host secret\n' },
    rootfs: { etc: {}, bin: {}, usr: { bin: {} }, data: { 'passwd.real': 'app:x:7:7::/app:/bin/sh\n' } },
  });
  const rootfs = join(dir, 'rootfs');
  // Planted symlinks: absolute and relative escapes.
  symlinkSync(join(dir, 'host', 'secret'), join(rootfs, 'etc', 'abs-escape'));
  symlinkSync('../../../../../../host/secret', join(rootfs, 'etc', 'rel-escape'));
  symlinkSync('/data/passwd.real', join(rootfs, 'etc', 'passwd'));
  symlinkSync('/', join(rootfs, 'usr', 'bin', 'up'));
  writeFileSync(join(rootfs, 'bin', 'tool'), '#!/bin/sh\n');
  chmodSync(join(rootfs, 'bin', 'tool'), 0o755);
  writeFileSync(join(rootfs, 'bin', 'plain'), 'data');
  chmodSync(join(rootfs, 'bin', 'plain'), 0o644);
  mkdirSync(join(rootfs, 'bin', 'dir'));
  symlinkSync('tool', join(rootfs, 'bin', 'link'));

  t.equal(await resolveInRoot(rootfs, '/etc/abs-escape'), join(rootfs, dir, 'host', 'secret'), 'an absolute target is taken inside the root');
  t.equal(await resolveInRoot(rootfs, '/etc/rel-escape'), join(rootfs, 'host', 'secret'), '.. stops at the root');
  t.equal(await resolveInRoot(rootfs, '/../../etc/../etc/passwd'), join(rootfs, 'data', 'passwd.real'));
  t.equal(await readRootFile(rootfs, '/etc/abs-escape'), undefined, 'the host file is not read');
  t.equal(await readRootFile(rootfs, '/etc/rel-escape'), undefined);
  t.equal(await readRootFile(rootfs, '/usr/bin/up/host/secret'), undefined);
  const user = await resolveUser(rootfs, 'app');
  t.equal(user.uid, 7, 'passwd symlinked inside the image is followed inside it');

  // [command, PATH, status]
  const commands: [string, string, string][] = [
    ['tool', '/bin', 'found'],
    ['link', '/bin', 'found'],
    ['plain', '/bin', 'not-executable'],
    ['dir', '/bin', 'not-executable'],
    ['missing', '/bin:/usr/bin', 'not-found'],
    ['/bin/tool', '', 'found'],
    ['./bin/tool', '', 'found'],
    ['tool', '/usr/bin/up/bin', 'found'],
    ['secret', '/usr/bin/up/../host:/../../host', 'not-found'], // the host's dir/host/secret stays out of reach
    ['plain', '/bin:/usr/bin', 'not-executable'],
  ];
  for (const [command, path, status] of commands) {
    const result = await findCommand(rootfs, command, path, '/');
    t.equal(result.status, status, `${command} in ${path || '(path)'}: ${status}`);
  }
  const hostSecret = await findCommand(rootfs, join(dir, 'host', 'secret'), '/bin', '/');
  t.equal(hostSecret.status, 'not-found', 'an absolute host path is looked up inside the rootfs');
});

t.test('flag parsers', async (t) => {
  t.strictSame(parseVolume('/h:/c'), { source: '/h', destination: '/c', readOnly: false });
  t.strictSame(parseVolume('/h/:/c/:ro'), { source: '/h/', destination: '/c', readOnly: true });
  // rel:/c (a named volume) and /h (an anonymous one) are volumes.ts's now.
  for (const bad of ['/h:c', '/h:/', '/h:/c:rx', '/a:/b:ro:x']) t.throws(() => parseVolume(bad), { code: 'ERR_USAGE' }, `-v ${bad}`);
  t.strictSame(parseTmpfs('/run'), { destination: '/run', options: [] });
  t.strictSame(parseTmpfs('/run:size=64m,exec'), { destination: '/run', options: ['size=64m', 'exec'] });
  t.throws(() => parseTmpfs('run'), { code: 'ERR_USAGE' });
  t.throws(() => parseTmpfs('/x:a b'), { code: 'ERR_USAGE' });
  t.strictSame(resolveEnvEntries(['A=1', 'B', 'C', 'D='], { B: 'two' }), ['A=1', 'B=two', 'D=']);
  t.throws(() => resolveEnvEntries(['=x'], {}), { code: 'ERR_USAGE' });
  t.strictSame(mergeEnv(['PATH=/bin', 'A=1'], ['A=2', 'B=3'], ['PATH=/usr/bin']), ['PATH=/usr/bin', 'A=2', 'B=3']);
});

t.test('capabilities', async (t) => {
  t.equal(DEFAULT_CAPS.length, 14);
  t.strictSame(applyCaps(DEFAULT_CAPS, [], ['ALL'], ALL_CAPS), []);
  t.strictSame(applyCaps(DEFAULT_CAPS, ['sys_admin'], ['CAP_NET_RAW', 'mknod'], ALL_CAPS).length, 13);
  t.ok(applyCaps(DEFAULT_CAPS, ['SYS_ADMIN'], [], ALL_CAPS).includes('CAP_SYS_ADMIN'));
  t.strictSame(applyCaps([], ['ALL'], [], ['CAP_CHOWN', 'CAP_KILL']), ['CAP_CHOWN', 'CAP_KILL'], 'ALL means what the host can grant');
  const spec = buildSpec({
    rootfs: '/r',
    readOnlyRoot: false,
    args: ['sh'],
    env: [],
    cwd: '/',
    user: { uid: 0, gid: 0, additionalGids: [], home: '/root' },
    hostname: 'h',
    terminal: false,
    capabilities: DEFAULT_CAPS,
    privileged: false,
    netHost: true,
    volumes: [],
    tmpfs: [],
    extraMounts: [],
    limits: {},
    cgroupsPath: '/conveyor/x',
    nofile: 20000,
  }) as { linux: { namespaces: { type: string }[]; resources: Record<string, unknown> }; process: { rlimits: { hard: number }[] } };
  t.notOk(
    spec.linux.namespaces.some((n) => n.type === 'network'),
    '--net host: no network namespace',
  );
  t.notOk('memory' in spec.linux.resources, 'no limit unless asked');
  t.equal(spec.process.rlimits[0].hard, 20000);
});

t.test('spec: cgroup namespace; --read-only covers the /etc files we mount', async (t) => {
  const etc = ['/etc/hosts', '/etc/hostname', '/etc/resolv.conf'].map((destination) => ({
    destination,
    type: 'bind',
    source: `/c${destination}`,
    options: ['rbind', 'rprivate'],
  }));
  const init = { destination: '/.conveyor-init', type: 'bind', source: '/usr/bin/tini-static', options: ['rbind', 'rprivate', 'ro'] };
  const input = (readOnlyRoot: boolean) => ({
    rootfs: '/r',
    readOnlyRoot,
    args: ['sh'],
    env: [],
    cwd: '/',
    user: { uid: 0, gid: 0, additionalGids: [], home: '/root' },
    hostname: 'h',
    terminal: false,
    capabilities: DEFAULT_CAPS,
    privileged: false,
    netHost: false,
    volumes: [{ source: '/v', destination: '/etc/app', readOnly: false }],
    tmpfs: [],
    extraMounts: [...etc, init],
    limits: {},
    cgroupsPath: '/conveyor/x',
    nofile: 1024,
  });
  type S = { mounts: { destination: string; options: string[] }[]; linux: { namespaces: { type: string }[] }; root: { readonly: boolean } };
  const options = (spec: S, destination: string) => spec.mounts.find((m) => m.destination === destination)!.options;
  const ro = buildSpec(input(true)) as S;
  t.ok(ro.root.readonly);
  for (const file of ['/etc/hosts', '/etc/hostname', '/etc/resolv.conf'])
    t.strictSame(options(ro, file), ['rbind', 'ro', 'rprivate'], `--read-only: ${file} read-only, as Docker mounts it`);
  t.strictSame(options(ro, '/etc/app'), ['rbind', 'rprivate', 'rw'], 'a volume keeps its own mode');
  const rw = buildSpec(input(false)) as S;
  t.strictSame(options(rw, '/etc/hosts'), ['rbind', 'rprivate'], 'writable without --read-only, as in Docker');
  t.strictSame(options(rw, '/.conveyor-init'), ['rbind', 'rprivate', 'ro']);
  t.ok(
    rw.linux.namespaces.some((n) => n.type === 'cgroup'),
    'a cgroup namespace',
  );
});

t.test('working directory under /proc is refused, also through symlinks in the image', async (t) => {
  const dir = t.testdir({ rootfs: { proc: {}, app: {}, etc: {} } });
  const rootfs = join(dir, 'rootfs');
  symlinkSync('/proc/self/fd/7', join(rootfs, 'fdlink'));
  symlinkSync('../proc', join(rootfs, 'etc', 'p'));
  symlinkSync('/app', join(rootfs, 'applink'));
  // [cwd, refused]
  const cases: [string, boolean][] = [
    ['/proc', true],
    ['/proc/self/fd/8', true],
    ['/proc/../proc/1/cwd', true],
    ['/fdlink', true],
    ['/etc/p/self/cwd', true],
    ['/fdlink/x', true],
    ['/', false],
    ['/app', false],
    ['/applink', false],
    ['/procfs', false],
    ['/app/proc', false],
    ['/missing/dir', false],
  ];
  for (const [cwd, refused] of cases) {
    if (refused) await t.rejects(checkWorkdir(rootfs, cwd), { code: 'ERR_SPAWN_UNSAFE_WORKDIR', message: /is in \/proc/ }, `${cwd} refused`);
    else await t.resolves(checkWorkdir(rootfs, cwd), `${cwd} allowed`);
  }
});

const ID = 'a'.repeat(64);
const paths = { id: ID, containerDir: `/s/containers/${ID}`, upper: 'u', work: 'w', merged: `/s/containers/${ID}/merged` };

t.test('how a container ended, from the exit code', async (t) => {
  const cases: [number, boolean, object][] = [
    [0, false, { exitCode: 0 }],
    [3, false, { exitCode: 3 }],
    [128, false, { exitCode: 128 }],
    [137, false, { exitCode: 137, signal: 'SIGKILL' }],
    [137, true, { exitCode: 137, signal: 'SIGKILL', oomKilled: true }],
    [143, false, { exitCode: 143, signal: 'SIGTERM' }],
    [130, false, { exitCode: 130, signal: 'SIGINT' }],
    [255, false, { exitCode: 255 }],
  ];
  for (const [code, oom, expected] of cases) t.strictSame(endOf(code, oom), expected, `${code}${oom ? ' oom' : ''}`);
});

t.test('isoTimestamp writes what Date#toISOString writes', async (t) => {
  const dates = [
    0,
    1,
    999,
    Date.UTC(2026, 10, 30, 20, 7, 56, 123),
    Date.UTC(2024, 1, 29, 23, 59, 59, 999),
    Date.UTC(2000, 0, 1),
    Date.UTC(1969, 11, 31, 23, 59, 59, 5),
    Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    Date.UTC(0, 0, 1) - 0, // Date.UTC maps 0 to 1900
    new Date('0000-01-01T00:00:00.000Z').getTime(),
    new Date('0042-03-04T05:06:07.089Z').getTime(),
    new Date('+010000-01-01T00:00:00.000Z').getTime(),
    new Date('-000001-12-31T23:59:59.999Z').getTime(),
    Date.now(),
  ].map((ms) => new Date(ms));
  for (const date of dates) t.equal(isoTimestamp(date), date.toISOString(), date.toISOString());
  t.throws(() => isoTimestamp(new Date(Number.NaN)), RangeError, 'an invalid date throws, as toISOString');
});

t.test('initial, exited state and the container record', async (t) => {
  const now = new Date('2026-11-29T21:00:00Z');
  const state = initialState({
    record: { type: 'rootfs', ref: 'docker.io/library/busybox:latest', digest: 'sha256:' + 'b'.repeat(64), config: { StopSignal: 'SIGQUIT' } },
    spec: { process: { args: ['sleep', '1'] } },
    runtime: { runtime: 'runc', runtimeRoot: '/run/x' },
    store: new Store('/s'),
    paths,
    cgroupsPath: `/conveyor/${ID}`,
    ephemeral: true,
    name: 'web',
    keep: false,
    autoRemove: true,
    owner: { pid: 42, startTime: '7' },
    log: { path: `${paths.containerDir}/ctr.log`, limits: { maxSize: 1024, maxFiles: 2 } },
    now,
  });
  t.match(state, {
    type: 'container',
    id: ID,
    name: 'web',
    status: 'created',
    image: 'docker.io/library/busybox:latest',
    imageDigest: 'sha256:' + 'b'.repeat(64),
    createdAt: '2026-11-29T21:00:00.000Z',
    supervisor: { pid: 42, startTime: '7' },
    stopSignal: 'SIGQUIT',
    autoRemove: true,
    command: ['sleep', '1'],
    logMaxSize: 1024,
    logMaxFiles: 2,
    ephemeralMount: true,
    rootfs: paths.merged,
  });
  t.notOk('keep' in state, 'keep only when asked');
  const running = { ...state, status: 'running' as const, pid: 99, pidStartTime: '8', statusDetail: 'x' };
  const exited = exitedState(running, endOf(137), new Date('2026-11-29T21:01:00Z'));
  t.match(exited, { status: 'exited', exitCode: 137, signal: 'SIGKILL', finishedAt: '2026-11-29T21:01:00.000Z' });
  t.notOk('pid' in exited || 'pidStartTime' in exited || 'statusDetail' in exited, 'no pid of a process that is gone');
  t.notOk('ref' in state, 'the reference is `image`');
  const record = containerRecordOf(new Store('/s'), { id: ID, dir: paths.containerDir, state: running });
  t.strictSame(
    Object.keys(record).sort(),
    ['bundle', 'command', 'createdAt', 'id', 'image', 'imageDigest', 'name', 'pid', 'status', 'statusDetail', 'store', 'type', 'v'],
    'record fields only',
  );
  t.equal(PID_FILE, 'container.pid', "the supervisor's own copy of the pid file name agrees");
});

t.test('--log-opt', async (t) => {
  const cases: [string[], object | string][] = [
    [[], { maxSize: 10 * 1024 * 1024, maxFiles: 3 }],
    [['max-size=1m'], { maxSize: 1024 * 1024, maxFiles: 3 }],
    [['max-size=2k', 'max-file=1'], { maxSize: 2048, maxFiles: 1 }],
    [['max-file=100'], { maxSize: 10 * 1024 * 1024, maxFiles: 100 }],
    [['max-size=10'], 'at least 1k'],
    [['max-size=lots'], 'not a size'],
    [['max-file=0'], 'whole number'],
    [['max-file=1.5'], 'whole number'],
    [['compress=true'], 'unknown --log-opt'],
    [['max-size'], 'not a size'],
  ];
  for (const [entries, expected] of cases) {
    if (typeof expected === 'string') t.throws(() => parseLogOpts(entries), { code: 'ERR_USAGE', message: new RegExp(expected) }, entries.join(' '));
    else t.strictSame(parseLogOpts(entries), expected, entries.join(' ') || 'defaults');
  }
});
