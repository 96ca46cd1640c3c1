/** The pure parts: user resolution, safe lookups inside a rootfs, flag parsers, capability sets. */
import t from 'tap';
import { mkdirSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { applyCaps, DEFAULT_CAPS, ALL_CAPS, buildSpec } from '../src/spec.js';
import { findCommand, readRootFile, resolveInRoot } from '../src/rootfs.js';
import { checkWorkdir, mergeEnv, parseTmpfs, parseVolume, resolveEnvEntries } from '../src/options.js';
import { parseGroup, parsePasswd, resolveUser, resolveUserIn } from '../src/user.js';

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
  for (const bad of ['rel:/c', '/h', '/h:c', '/h:/', '/h:/c:rx', '/a:/b:ro:x']) t.throws(() => parseVolume(bad), { code: 'ERR_USAGE' }, `-v ${bad}`);
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
