/**
 * The pure parts of ctr-spawn's rootless mode (src/rootless.ts, spec.ts's rootless input),
 * table-driven: id maps, the delegated cgroup decision against a fake cgroup tree (v1 and v2),
 * and what the spec changes for a user namespace.
 */
import t from 'tap';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseMap as parseIdMap } from '@conveyor/lib-common/rootless/subid';
import { highestMapped, isMapped, outsideIdOf, rootlessCgroupsPath } from '../src/rootless.js';
import { buildSpec, DEFAULT_CAPS, type SpecInput } from '../src/spec.js';

t.test('id maps', async (t) => {
  const range = parseIdMap('         0       1002          1\n         1     300000      65536\n');
  const single = parseIdMap('0 1002 1\n');
  const cases: [string, ReturnType<typeof parseIdMap>, number, boolean][] = [
    ['range maps 0', range, 0, true],
    ['range maps 5 (tty)', range, 5, true],
    ['range maps 65536', range, 65536, true],
    ['range stops at 65537', range, 65537, false],
    ['single maps 0', single, 0, true],
    ['single has no 5', single, 5, false],
    ['nothing maps nothing', [], 0, false],
  ];
  for (const [name, map, id, want] of cases) t.equal(isMapped(map, id), want, name);
  t.equal(highestMapped(range), 65536);
  t.equal(highestMapped(single), 0);
  t.equal(outsideIdOf(range), 1002, 'uid 0 inside is the user');
  t.equal(outsideIdOf(range, 1000), 300999);
  t.equal(outsideIdOf([]), undefined);
  t.strictSame(parseIdMap('garbage\n0 x 1\n-1 2 3\n'), [], 'malformed lines are skipped');
});

t.test('delegated cgroup: v1 needs every hierarchy, v2 one directory', async (t) => {
  const v1 = (delegated: string[]) => {
    const root = t.testdir({});
    for (const h of ['memory', 'pids', 'cpu']) {
      mkdirSync(join(root, h));
      writeFileSync(join(root, h, 'cgroup.procs'), '');
      if (delegated.includes(h)) {
        mkdirSync(join(root, h, 'conveyor-user-1002'));
        writeFileSync(join(root, h, 'conveyor-user-1002', 'cgroup.procs'), '');
      }
    }
    return root;
  };
  const id = 'a'.repeat(64);
  const full = v1(['memory', 'pids', 'cpu']);
  t.equal(rootlessCgroupsPath(id, 1002, ['--memory'], full), `/conveyor-user-1002/${id}`, 'delegated: under it');
  t.equal(rootlessCgroupsPath(id, 1002, [], full), `/conveyor-user-1002/${id}`, 'delegated, no limit: still under it (ctr-stats counts)');
  const partial = v1(['memory']);
  t.equal(rootlessCgroupsPath(id, 1002, [], partial), '', 'not delegated everywhere, no limit: no cgroup');
  t.throws(() => rootlessCgroupsPath(id, 1002, ['--memory', '--pids-limit'], partial), {
    code: 'ERR_CGROUP',
    message: /--memory, --pids-limit needs a cgroup delegated to you \(uid 1002\): .* is missing or not yours \(.*\/(cpu|pids)\/conveyor-user-1002\)/,
  });
  t.throws(() => rootlessCgroupsPath(id, 1002, ['--cpus'], v1([])), { code: 'ERR_CGROUP' });
  t.throws(() => rootlessCgroupsPath(id, 1002, ['--cpus'], t.testdir({})), { code: 'ERR_CGROUP' }, 'no cgroupfs at all');

  const v2 = t.testdir({ 'cgroup.controllers': 'cpu memory pids\n', 'cgroup.procs': '' });
  t.throws(() => rootlessCgroupsPath(id, 1002, ['--memory'], v2), { code: 'ERR_CGROUP' }, 'v2 without the directory');
  mkdirSync(join(v2, 'conveyor-user-1002'));
  writeFileSync(join(v2, 'conveyor-user-1002', 'cgroup.procs'), '');
  t.equal(rootlessCgroupsPath(id, 1002, ['--memory'], v2), `/conveyor-user-1002/${id}`);
  if (process.getuid?.() !== 0) {
    chmodSync(join(v2, 'conveyor-user-1002', 'cgroup.procs'), 0o444);
    t.throws(() => rootlessCgroupsPath(id, 1002, ['--memory'], v2), { code: 'ERR_CGROUP' }, 'not writable');
  }
});

t.test('spec rootless: devpts gid, sysfs on the host network, ping range, no cgroup path', async (t) => {
  const base: SpecInput = {
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
    netHost: false,
    volumes: [],
    tmpfs: [],
    extraMounts: [],
    limits: {},
    cgroupsPath: '/conveyor/x',
    nofile: 1024,
  };
  type S = { mounts: { destination: string; type: string; options: string[] }[]; linux: { cgroupsPath?: string; sysctl?: Record<string, string> } };
  const spec = (input: Partial<SpecInput>) => buildSpec({ ...base, ...input }) as unknown as S;
  const mount = (s: S, destination: string) => s.mounts.find((m) => m.destination === destination)!;
  const cases: [string, Partial<SpecInput>, (s: S) => void][] = [
    [
      'rootful: as before',
      {},
      (s) => {
        t.ok(mount(s, '/dev/pts').options.includes('gid=5'));
        t.equal(mount(s, '/sys').type, 'sysfs');
        t.equal(s.linux.sysctl?.['net.ipv4.ping_group_range'], '0 2147483647');
        t.equal(s.linux.cgroupsPath, '/conveyor/x');
      },
    ],
    [
      'range: gid 5 mapped, ping range up to the highest gid',
      { rootless: { ttyGroupMapped: true, highestGid: 65536 } },
      (s) => {
        t.ok(mount(s, '/dev/pts').options.includes('gid=5'));
        t.equal(s.linux.sysctl?.['net.ipv4.ping_group_range'], '0 65536');
        t.equal(mount(s, '/sys').type, 'sysfs', 'its own network namespace: sysfs');
      },
    ],
    [
      'single mapping: no gid=5',
      { rootless: { ttyGroupMapped: false, highestGid: 0 } },
      (s) => {
        t.notOk(mount(s, '/dev/pts').options.includes('gid=5'));
        t.equal(s.linux.sysctl?.['net.ipv4.ping_group_range'], '0 0');
      },
    ],
    [
      'host network: /sys bound, not mounted',
      { rootless: { ttyGroupMapped: true, highestGid: 65536 }, netHost: true },
      (s) => {
        t.equal(mount(s, '/sys').type, 'bind');
        t.ok(mount(s, '/sys').options.includes('rbind') && mount(s, '/sys').options.includes('ro'));
        t.equal(s.linux.sysctl, undefined, 'no network sysctls on the host network');
      },
    ],
    [
      'no delegated cgroup: no cgroupsPath',
      { rootless: { ttyGroupMapped: true, highestGid: 65536 }, cgroupsPath: '' },
      (s) => t.notOk('cgroupsPath' in s.linux),
    ],
  ];
  for (const [name, input, check] of cases) t.test(name, async () => check(spec(input)));
});
