/**
 * Hardening seen from inside real containers: --read-only covers the /etc
 * files we mount, the container has its own cgroup namespace, and a working
 * directory in /proc is refused before anything runs.
 */
import t from 'tap';
import { readlinkSync } from 'node:fs';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { containerDirs, ctrSpawn, mountsUnder } from './helpers.js';

const root = tempStore('conveyor-harden-');
t.teardown(() => removeStore(root));
const latest = busyboxRootfs(root, 'latest');

const append = (file: string) => `(echo x >> ${file}) 2>/dev/null && echo ${file} written || echo ${file} refused`;

t.test('--read-only: /etc/hosts, /etc/hostname and /etc/resolv.conf are read-only too', async (t) => {
  const script = ['/etc/hosts', '/etc/hostname', '/etc/resolv.conf', '/tmp/f'].map(append).join('; ');
  // [flags, expected lines]
  const cases: [string[], string][] = [
    [[], '/etc/hosts written\n/etc/hostname written\n/etc/resolv.conf written\n/tmp/f written\n'],
    [['--read-only'], '/etc/hosts refused\n/etc/hostname refused\n/etc/resolv.conf refused\n/tmp/f refused\n'],
    [['--read-only', '--tmpfs', '/tmp'], '/etc/hosts refused\n/etc/hostname refused\n/etc/resolv.conf refused\n/tmp/f written\n'],
    [['--read-only', '--net', 'host'], '/etc/hosts refused\n/etc/hostname refused\n/etc/resolv.conf refused\n/tmp/f refused\n'],
  ];
  for (const [flags, expected] of cases) {
    const r = await ctrSpawn(latest, [...flags, '--', 'sh', '-c', script]);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, expected, flags.join(' ') || 'default');
  }
  const hosts = await ctrSpawn(latest, ['--read-only', '--hostname', 'box', '--', 'sh', '-c', 'cat /etc/hostname; grep -c box /etc/hosts']);
  t.equal(hosts.stdout, 'box\n1\n', 'the files still hold the hostname');
});

t.test('a cgroup namespace of its own', async (t) => {
  const r = await ctrSpawn(latest, [
    '-m',
    '32m',
    '--pids-limit',
    '50',
    '--',
    'sh',
    '-c',
    'cat /proc/self/cgroup; readlink /proc/self/ns/cgroup; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; (mkdir /sys/fs/cgroup/memory/x) 2>/dev/null && echo writable || echo read-only',
  ]);
  t.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const cgroups = lines.filter((l) => /^\d+:/.test(l));
  t.ok(cgroups.length > 0, 'cgroup lines');
  t.strictSame(
    cgroups.filter((l) => !l.endsWith(':/')),
    [],
    'every hierarchy shows the container cgroup as /',
  );
  t.notOk(r.stdout.includes('/conveyor/'), 'the host path of the cgroup stays hidden');
  const ns = lines.find((l) => l.startsWith('cgroup:['));
  t.ok(ns, 'ns link');
  t.not(ns, readlinkSync('/proc/self/ns/cgroup'), 'not the host cgroup namespace');
  t.match(r.stdout, /^33554432\n50\nread-only\n$/m, 'limits visible in the mounted cgroup, read-only');
});

t.test('a working directory in /proc is refused (CVE-2024-21626)', async (t) => {
  // [record WorkingDir, -w flag]
  const cases: [string | undefined, string | undefined][] = [
    ['/proc/self/fd/7', undefined],
    ['/tmp/../proc/self/fd/8', undefined],
    [undefined, '/proc'],
    [undefined, '/dev/../proc/1/cwd'],
  ];
  for (const [workdir, flag] of cases) {
    const record = workdir ? { ...latest, config: { ...latest.config, WorkingDir: workdir } } : latest;
    const r = await ctrSpawn(record, [...(flag ? ['-w', flag] : []), '--log-format', 'json', '--', 'pwd']);
    t.equal(r.code, 125, `${workdir ?? flag}: exit 125`);
    t.equal(r.stdout, '', 'nothing ran');
    const error = JSON.parse(r.stderr.trim().split('\n').at(-1)!);
    t.equal(error.code, 'ERR_SPAWN_UNSAFE_WORKDIR', r.stderr);
    t.match(error.message, /is in \/proc/);
  }
  const ok = await ctrSpawn({ ...latest, config: { ...latest.config, WorkingDir: '/procfs/x' } }, ['--', 'pwd']);
  t.equal(ok.stdout, '/procfs/x\n', 'a name that merely starts with proc is fine');
  t.strictSame(mountsUnder(root), [], 'no mounts left');
  t.strictSame(containerDirs(root), [], 'no container dirs left');
});
