/**
 * The Docker run flags of issue 11, without runc: their parsers (good and bad
 * values, table-driven), the spec they give (buildSpec, orderMounts), and the
 * built ctr-spawn refusing bad values with exit 125 before reading a record.
 */
import t from 'tap';
import { buildSpec, DEFAULT_CAPS, orderMounts, type Mount, type SpecInput } from '../src/spec.js';
import {
  parseAddHost,
  parseDevice,
  parseDockerRunFlags,
  parseGroupAdd,
  parseMemorySwap,
  parseMount,
  parseNamespaceFlag,
  parseNet,
  parseOomScoreAdj,
  parseSecurityOpts,
  parseShmSize,
  parseSysctl,
  parseUlimit,
  parseVolume,
} from '../src/options.js';
import { runTool } from '../../../test/helpers/tools.js';

const MB = 1024 * 1024;
/** PATH lookups for parseNet: a host with neither helper, and one with both. */
const noHelper = () => undefined;
const installed = (program: string) => `/usr/bin/${program}`;

t.test('parsers: good values', async (t) => {
  // [what, got, expected]
  const cases: [string, unknown, unknown][] = [
    ['--device /dev/fuse', parseDevice('/dev/fuse'), { hostPath: '/dev/fuse', containerPath: '/dev/fuse', access: 'rwm' }],
    ['--device HOST:CTR', parseDevice('/dev/loop0:/dev/xvda'), { hostPath: '/dev/loop0', containerPath: '/dev/xvda', access: 'rwm' }],
    ['--device HOST:CTR:PERMS', parseDevice('/dev/sda:/dev/xvda:r'), { hostPath: '/dev/sda', containerPath: '/dev/xvda', access: 'r' }],
    ['--device HOST:PERMS', parseDevice('/dev/fuse:rw'), { hostPath: '/dev/fuse', containerPath: '/dev/fuse', access: 'rw' }],
    ['--ulimit soft:hard', parseUlimit('nofile=1024:4096'), { type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }],
    ['--ulimit soft', parseUlimit('core=0'), { type: 'RLIMIT_CORE', soft: 0, hard: 0 }],
    ['--sysctl net', parseSysctl('net.ipv4.ip_forward=1', { net: false, ipc: false, uts: false }), ['net.ipv4.ip_forward', '1']],
    ['--sysctl ipc', parseSysctl('kernel.shmmax=1000', { net: true, ipc: false, uts: false }), ['kernel.shmmax', '1000']],
    ['--sysctl mqueue', parseSysctl('fs.mqueue.msg_max=20', { net: false, ipc: false, uts: false }), ['fs.mqueue.msg_max', '20']],
    ['--sysctl value with =', parseSysctl('net.ipv4.ping_group_range=0 10', { net: false, ipc: false, uts: false }), ['net.ipv4.ping_group_range', '0 10']],
    ['--group-add gid', parseGroupAdd('10'), '10'],
    ['--group-add name', parseGroupAdd('audio'), 'audio'],
    ['--shm-size', parseShmSize('128m'), 128 * MB],
    ['--memory-swap', parseMemorySwap('96m', 64 * MB), 96 * MB],
    ['--memory-swap -1', parseMemorySwap('-1', 64 * MB), -1],
    ['--memory-swap = --memory', parseMemorySwap('64m', 64 * MB), 64 * MB],
    ['--oom-score-adj', parseOomScoreAdj('-500'), -500],
    ['--pid host', parseNamespaceFlag('pid', 'host'), { mode: 'host' }],
    ['--pid container:', parseNamespaceFlag('pid', 'container:web'), { mode: 'container', ref: 'web' }],
    ['--ipc shareable', parseNamespaceFlag('ipc', 'shareable'), { mode: 'private' }],
    ['--ipc none', parseNamespaceFlag('ipc', 'none'), { mode: 'none' }],
    ['--ipc private', parseNamespaceFlag('ipc', 'private'), { mode: 'private' }],
    ['--uts host', parseNamespaceFlag('uts', 'host'), { mode: 'host' }],
    ['--add-host NAME:IP', parseAddHost('db:10.0.0.5'), { name: 'db', ip: '10.0.0.5' }],
    ['--add-host NAME=IP', parseAddHost('db=10.0.0.5'), { name: 'db', ip: '10.0.0.5' }],
    ['--add-host IPv6', parseAddHost('v6:fd00::1'), { name: 'v6', ip: 'fd00::1' }],
    ['--add-host [IPv6]', parseAddHost('v6:[fd00::1]'), { name: 'v6', ip: 'fd00::1' }],
    ['--network none', parseNet('none', noHelper), { mode: 'private' }],
    ['--network host', parseNet('host', noHelper), { mode: 'host' }],
    ['--network container:', parseNet('container:web', noHelper), { mode: 'container', ref: 'web' }],
    ['--network default, pasta installed', parseNet(undefined, installed), { mode: 'pasta', program: '/usr/bin/pasta' }],
    ['--network bridge, pasta installed', parseNet('bridge', installed), { mode: 'pasta', program: '/usr/bin/pasta' }],
    ['--network default, no helper', parseNet(undefined, noHelper), { mode: 'private' }],
    ['--network default, no default route', parseNet(undefined, installed, () => false), { mode: 'slirp4netns', program: '/usr/bin/slirp4netns' }],
    [
      '--network default, no default route, only pasta',
      parseNet(
        undefined,
        (p) => (p === 'pasta' ? '/usr/bin/pasta' : undefined),
        () => false,
      ),
      { mode: 'private' },
    ],
    ['--network pasta by name, no default route', parseNet('pasta', installed, () => false), { mode: 'pasta', program: '/usr/bin/pasta' }],
    ['--network slirp4netns by name', parseNet('slirp4netns', installed), { mode: 'slirp4netns', program: '/usr/bin/slirp4netns' }],
    ['--add-host host-gateway', parseAddHost('gw:host-gateway'), { name: 'gw', ip: 'host-gateway' }],
    ['-v rshared', parseVolume('/h:/c:rshared'), { source: '/h', destination: '/c', readOnly: false, propagation: 'rshared' }],
    ['-v ro,rslave,z', parseVolume('/h:/c:ro,rslave,z'), { source: '/h', destination: '/c', readOnly: true, propagation: 'rslave' }],
    ['-v Z', parseVolume('/h:/c:Z'), { source: '/h', destination: '/c', readOnly: false }],
    ['--mount bind', parseMount('type=bind,src=/h,dst=/c,readonly'), { bind: { source: '/h', destination: '/c', readOnly: true, mustExist: true } }],
    [
      '--mount bind, long keys',
      parseMount('type=bind,source=/h,target=/c,ro=false,bind-propagation=rslave'),
      { bind: { source: '/h', destination: '/c', readOnly: false, mustExist: true, propagation: 'rslave' } },
    ],
    [
      '--mount tmpfs',
      parseMount('type=tmpfs,destination=/t,tmpfs-size=1m,tmpfs-mode=1770'),
      { tmpfs: { destination: '/t', options: ['size=1024k', 'mode=1770'] } },
    ],
    ['--mount tmpfs readonly', parseMount('type=tmpfs,dst=/t,readonly=true'), { tmpfs: { destination: '/t', options: ['ro'] } }],
    [
      '--security-opt no-new-privileges',
      parseSecurityOpts(['no-new-privileges', 'label=disable', 'apparmor=unconfined']),
      { seccompUnconfined: false, seccompProfileFile: undefined, noNewPrivileges: true },
    ],
    [
      '--security-opt no-new-privileges:false',
      parseSecurityOpts(['no-new-privileges:false', 'seccomp=unconfined', 'label:disable']),
      { seccompUnconfined: true, seccompProfileFile: undefined, noNewPrivileges: false },
    ],
  ];
  for (const [what, got, expected] of cases) t.strictSame(got, expected, what);
});

t.test('parsers: bad values are usage errors', async (t) => {
  const none = { net: false, ipc: false, uts: false };
  // [what, call]
  const cases: [string, () => unknown][] = [
    ['--device relative', () => parseDevice('dev/fuse')],
    ['--device bad perms', () => parseDevice('/dev/fuse:/dev/fuse:rwx')],
    ['--device repeated perms', () => parseDevice('/dev/fuse:/dev/fuse:rr')],
    ['--device relative container path', () => parseDevice('/dev/fuse:fuse:rw')],
    ['--device four fields', () => parseDevice('/a:/b:r:w')],
    ['--ulimit unknown name', () => parseUlimit('files=10')],
    ['--ulimit soft > hard', () => parseUlimit('nofile=10:5')],
    ['--ulimit unlimited', () => parseUlimit('core=-1')],
    ['--ulimit no value', () => parseUlimit('nofile')],
    ['--ulimit not a number', () => parseUlimit('nofile=ten')],
    ['--sysctl host-wide', () => parseSysctl('kernel.panic=1', none)],
    ['--sysctl vm', () => parseSysctl('vm.swappiness=0', none)],
    ['--sysctl net with --net host', () => parseSysctl('net.ipv4.ip_forward=1', { ...none, net: true })],
    ['--sysctl ipc with --ipc host', () => parseSysctl('kernel.shmmax=1', { ...none, ipc: true })],
    ['--sysctl domainname with --uts host', () => parseSysctl('kernel.domainname=x', { ...none, uts: true })],
    ['--sysctl no value', () => parseSysctl('net.ipv4.ip_forward', none)],
    ['--sysctl path traversal', () => parseSysctl('net.ipv4/../../kernel.panic=1', none)],
    ['--sysctl newline', () => parseSysctl('net.ipv4.ip_forward=1\n2', none)],
    ['--group-add bad name', () => parseGroupAdd('a b')],
    ['--group-add gid too large', () => parseGroupAdd('4294967295')],
    ['--shm-size zero', () => parseShmSize('0')],
    ['--shm-size not a size', () => parseShmSize('big')],
    ['--memory-swap without --memory', () => parseMemorySwap('1g', undefined)],
    ['--memory-swap below --memory', () => parseMemorySwap('32m', 64 * MB)],
    ['--memory-swap not a size', () => parseMemorySwap('lots', 64 * MB)],
    ['--oom-score-adj too high', () => parseOomScoreAdj('1001')],
    ['--oom-score-adj fraction', () => parseOomScoreAdj('1.5')],
    ['--pid unknown', () => parseNamespaceFlag('pid', 'shared')],
    ['--pid container: empty', () => parseNamespaceFlag('pid', 'container:')],
    ['--uts container:', () => parseNamespaceFlag('uts', 'container:web')],
    ['--pid none', () => parseNamespaceFlag('pid', 'none')],
    ['--add-host no IP', () => parseAddHost('db')],
    ['--add-host bad IP', () => parseAddHost('db:10.0.0.300')],
    ['--add-host bad name', () => parseAddHost('-db:10.0.0.5')],
    ['--add-host newline in name', () => parseAddHost('db\nevil:10.0.0.5')],
    ['--network unknown', () => parseNet('overlay', installed)],
    [
      '--network slirp, no default route, only pasta',
      () =>
        parseNet(
          'slirp',
          (p) => (p === 'pasta' ? '/usr/bin/pasta' : undefined),
          () => false,
        ),
    ],
    ['--network container: empty', () => parseNet('container:', installed)],
    ['--network slirp, no helper', () => parseNet('slirp', noHelper)],
    ['--network pasta, not installed', () => parseNet('pasta', () => undefined)],
    ['-v two propagations', () => parseVolume('/h:/c:rshared,rslave')],
    ['-v ro and rw', () => parseVolume('/h:/c:ro,rw')],
    ['-v unknown mode', () => parseVolume('/h:/c:exec')],
    ['-v nocopy on a bind', () => parseVolume('/h:/c:nocopy')],
    ['--mount unknown type', () => parseMount('type=npipe,src=/h,dst=/c')],
    ['--mount bind relative source', () => parseMount('type=bind,src=h,dst=/c')],
    ['--mount bind no source', () => parseMount('type=bind,dst=/c')],
    ['--mount no destination', () => parseMount('type=bind,src=/h')],
    ['--mount relative destination', () => parseMount('type=bind,src=/h,dst=c')],
    ['--mount over /', () => parseMount('type=bind,src=/h,dst=/')],
    ['--mount unknown field', () => parseMount('type=bind,src=/h,dst=/c,consistency=cached')],
    ['--mount field twice', () => parseMount('type=bind,src=/h,dst=/c,dst=/d')],
    ['--mount src and source', () => parseMount('type=bind,src=/h,source=/i,dst=/c')],
    ['--mount bad readonly', () => parseMount('type=bind,src=/h,dst=/c,readonly=maybe')],
    ['--mount bad propagation', () => parseMount('type=bind,src=/h,dst=/c,bind-propagation=shared-ish')],
    ['--mount tmpfs with source', () => parseMount('type=tmpfs,src=/h,dst=/c')],
    ['--mount tmpfs bad mode', () => parseMount('type=tmpfs,dst=/c,tmpfs-mode=999')],
    ['--mount tmpfs bind option', () => parseMount('type=tmpfs,dst=/c,bind-propagation=rshared')],
    ['--security-opt label=user', () => parseSecurityOpts(['label=user:USER'])],
    ['--security-opt apparmor profile', () => parseSecurityOpts(['apparmor=docker-default'])],
    ['--security-opt no-new-privileges=maybe', () => parseSecurityOpts(['no-new-privileges=maybe'])],
    ['--ulimit twice', () => parseDockerRunFlags({ ulimit: ['nofile=1', 'nofile=2'] }, { netHost: false })],
    ['--sysctl net with host network', () => parseDockerRunFlags({ sysctl: ['net.core.somaxconn=1'] }, { netHost: true })],
    ['--sysctl ipc with --ipc container:', () => parseDockerRunFlags({ sysctl: ['kernel.sem=1 2 3 4'], ipc: 'container:web' }, { netHost: false })],
  ];
  for (const [what, call] of cases) t.throws(call, { code: 'ERR_USAGE' }, what);
});

const base: SpecInput = {
  rootfs: '/r',
  readOnlyRoot: false,
  args: ['sh'],
  env: [],
  cwd: '/',
  user: { uid: 1234, gid: 5678, additionalGids: [10], home: '/' },
  hostname: 'box',
  terminal: false,
  capabilities: DEFAULT_CAPS,
  privileged: false,
  netHost: false,
  volumes: [],
  tmpfs: [],
  extraMounts: [],
  limits: {},
  cgroupsPath: '/conveyor/x',
  nofile: 1024,
};
type Json = Record<string, any>;
const spec = (changes: Partial<SpecInput>) => buildSpec({ ...base, ...changes }) as Json;

t.test("spec: Docker's defaults", async (t) => {
  const s = spec({});
  t.strictSame(s.process.user, { uid: 1234, gid: 5678, additionalGids: [5678, 10] }, 'the primary group first among the supplementary ones');
  t.equal(s.process.noNewPrivileges, false);
  t.strictSame(s.linux.sysctl, { 'net.ipv4.ip_unprivileged_port_start': '0', 'net.ipv4.ping_group_range': '0 2147483647' });
  t.notOk(spec({ netHost: true }).linux.sysctl, "--net host: none (they would be the host's)");
  t.strictSame(spec({ netHost: true, sysctls: { 'kernel.shmmax': '1' } }).linux.sysctl, { 'kernel.shmmax': '1' });
  t.strictSame(spec({ limits: { memory: 64 * MB, swapLimit: true } }).linux.resources.memory, { limit: 64 * MB, swap: 128 * MB }, 'swap as much again');
  t.strictSame(spec({ limits: { memory: 64 * MB, swapLimit: true, memorySwap: -1 } }).linux.resources.memory, { limit: 64 * MB, swap: -1 });
  t.strictSame(spec({ limits: { memory: 64 * MB, swapLimit: false } }).linux.resources.memory, { limit: 64 * MB }, 'no swap accounting: no swap limit');
  const shmOptions = (x: Json) => x.mounts.find((m: Json) => m.destination === '/dev/shm').options as string[];
  t.ok(shmOptions(s).includes('size=65536k'), '/dev/shm 64m');
  t.ok(shmOptions(spec({ shmSize: 2 * MB })).includes('size=2048k'), '--shm-size');
  t.notOk(
    spec({ noShm: true }).mounts.some((m: Json) => m.destination === '/dev/shm'),
    '--ipc none: no /dev/shm',
  );
  t.equal(s.linux.rootfsPropagation, undefined);
});

t.test('spec: the flags', async (t) => {
  const s = spec({
    noNewPrivileges: true,
    rlimits: [
      { type: 'RLIMIT_NOFILE', soft: 10, hard: 20 },
      { type: 'RLIMIT_CORE', soft: 0, hard: 0 },
    ],
    oomScoreAdj: 300,
    devices: [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0, access: 'rwm' }],
    pid: { mode: 'host' },
    ipc: { mode: 'join', path: '/proc/42/ns/ipc' },
    uts: { mode: 'host' },
    volumes: [{ source: '/h', destination: '/c', readOnly: false, propagation: 'rslave' }],
  });
  t.equal(s.process.noNewPrivileges, true);
  t.strictSame(
    s.process.rlimits,
    [
      { type: 'RLIMIT_NOFILE', soft: 10, hard: 20 },
      { type: 'RLIMIT_CORE', soft: 0, hard: 0 },
    ],
    '--ulimit nofile replaces the default',
  );
  t.equal(s.process.oomScoreAdj, 300);
  t.strictSame(s.linux.devices, [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }]);
  t.strictSame(s.linux.resources.devices, [
    { allow: false, access: 'rwm' },
    { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' },
  ]);
  const types = s.linux.namespaces.map((n: Json) => n.type);
  t.notOk(types.includes('pid') || types.includes('uts'), 'host pid and uts: no namespace');
  t.strictSame(
    s.linux.namespaces.find((n: Json) => n.type === 'ipc'),
    { type: 'ipc', path: '/proc/42/ns/ipc' },
  );
  t.equal(s.hostname, undefined, 'no hostname without a UTS namespace (runc refuses one)');
  t.equal(s.linux.rootfsPropagation, 'rslave');
  t.equal(spec({ volumes: [{ source: '/h', destination: '/c', readOnly: true, propagation: 'shared' }] }).linux.rootfsPropagation, 'rshared');
  const privileged = spec({
    privileged: true,
    devices: [{ path: '/dev/kvm', type: 'c', major: 10, minor: 232, fileMode: 0o660, uid: 0, gid: 0, access: 'rwm' }],
  });
  t.strictSame(privileged.linux.resources.devices, [{ allow: true, access: 'rwm' }], '--privileged: every device allowed');
  t.equal(privileged.linux.devices.length, 1, 'and the nodes given');
});

t.test("orderMounts: Docker's order, parents first; a later mount replaces one at the same place", async (t) => {
  const m = (destination: string, source = 'x'): Mount => ({ destination, source });
  const defaults = [m('/proc'), m('/dev'), m('/dev/shm', 'shm')];
  // [added, expected destinations and sources]
  const cases: [Mount[], string[]][] = [
    [[], ['/proc:x', '/dev:x', '/dev/shm:shm']],
    [
      [m('/etc/hosts', 'ours'), m('/etc', 'vol')],
      ['/proc:x', '/dev:x', '/dev/shm:shm', '/etc:vol', '/etc/hosts:ours'],
    ],
    [[m('/dev/shm', 'tmpfs')], ['/proc:x', '/dev:x', '/dev/shm:tmpfs']],
    [
      [m('/etc/hosts', 'ours'), m('/etc/hosts', 'user')],
      ['/proc:x', '/dev:x', '/dev/shm:shm', '/etc/hosts:user'],
    ],
    [
      [m('/a/b/c'), m('/a'), m('/z'), m('/a/b')],
      ['/proc:x', '/dev:x', '/dev/shm:shm', '/a:x', '/z:x', '/a/b:x', '/a/b/c:x'],
    ],
  ];
  for (const [added, expected] of cases) {
    t.strictSame(
      orderMounts(defaults, added).map((x) => `${x.destination}:${x.source}`),
      expected,
      added.map((a) => a.destination).join(' ') || 'none',
    );
  }
});

t.test('the built ctr-spawn refuses bad values with 125 before reading a record', async (t) => {
  // One per way a value reaches a parser from cli.ts (the parsers' own cases are above).
  const cases: string[][] = [
    ['--ulimit', 'nofile=9:1'],
    ['--net', 'host', '--network', 'private'],
    ['--memory-swap', '1g'],
    ['--security-opt', 'label=level:s0'],
    ['--net', 'host', '--sysctl', 'net.ipv4.ip_forward=1'],
    ['--uts', 'host', '--hostname', 'box'],
    // Host facts too, so conveyor-run's --check-flags sees them before it pulls.
    ['--device', '/etc/hostname'],
    ['--mount', 'type=bind,src=/nonexistent-conveyor-source,dst=/x'],
  ];
  for (const flags of cases) {
    const r = await runTool('ctr-spawn', [...flags, '--', 'true'], { input: '' });
    t.equal(r.code, 125, flags.join(' '));
    t.match(r.stderr, /ctr-spawn: /, 'with a message');
  }
  const unknown = await runTool('ctr-spawn', ['--cgroupns', 'host', '--', 'true'], { input: '' });
  t.equal(unknown.code, 125, 'an unknown flag: 125, as every ctr-spawn failure');
  t.match(unknown.stderr, /unknown flag --cgroupns/);
});
