/**
 * Docker's runtime defaults and run flags (issue 11), seen from inside real
 * runc containers: /proc/self/status, /proc/sys, mountinfo, the devices
 * cgroup. One container per behaviour group, each checking several things in
 * one shell script that prints `key=value` lines.
 */
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { swapLimitSupported } from '@conveyor/lib-common/container/cgroup';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { removeDetached, startDetached } from '../../../test/helpers/containers.js';
import { ctrSpawn } from './helpers.js';

const root = tempStore('conveyor-docker-defaults-');
t.teardown(() => removeStore(root));
const latest = { ...busyboxRootfs(root, 'latest'), store: root };
const scratch = mkdtempSync(join(tmpdir(), 'conveyor-docker-defaults-host-'));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

/** Runs `script` in a container with `flags`; its `key=value` lines as an object. */
async function probe(t: Tap.Test, flags: string[], script: string): Promise<Record<string, string>> {
  const r = await ctrSpawn(latest, [...flags, '--', 'sh', '-c', script]);
  t.equal(r.code, 0, `${flags.join(' ')}: ${r.stderr}`);
  return Object.fromEntries(
    r.stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

const status = (field: string) => `echo ${field}=$(grep '^${field}:' /proc/self/status | cut -f2- | tr -s ' \\t' ' ' | sed 's/^ //;s/ $//')`;

t.test('a non-root user: its group among the supplementary ones, ports below 1024, ping, no_new_privs off', async (t) => {
  const out = await probe(
    t,
    ['-u', '1234:5678', '--group-add', '10', '--group-add', 'staff'],
    [
      status('Groups'),
      status('NoNewPrivs'),
      'echo port_start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)',
      'echo ping_range=$(cat /proc/sys/net/ipv4/ping_group_range | tr -s " \\t" " ")',
      // httpd forks into the background once bound: its exit status says whether port 80 was allowed.
      'httpd -p 80 -h / 2>/dev/null && echo port80=bound || echo port80=refused',
    ].join('; '),
  );
  t.equal(out.Groups, '10 50 5678', 'the primary group 5678 is listed, with --group-add 10 and staff (gid 50 in the fixture)');
  t.equal(out.NoNewPrivs, '0', 'no_new_privs off by default, as Docker');
  t.equal(out.port_start, '0');
  // Busybox's ping opens only raw sockets (no ICMP datagram fallback): the range is what lets other pings work.
  t.equal(out.ping_range, '0 2147483647', 'every group may open ICMP datagram sockets (unprivileged ping)');
  t.equal(out.port80, 'bound', 'a non-root process listens on port 80');

  const strict = await probe(
    t,
    ['-u', '1234', '--net', 'host', '--security-opt', 'no-new-privileges'],
    [status('NoNewPrivs'), 'echo port_start=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)'].join('; '),
  );
  t.equal(strict.NoNewPrivs, '1', '--security-opt no-new-privileges sets it');
  t.equal(strict.port_start, readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim(), '--net host: the host keeps its own sysctls');
});

t.test("mounts in Docker's order: a volume on /etc keeps /etc/hosts; --tmpfs /dev/shm replaces the default", async (t) => {
  const etc = join(scratch, 'etc');
  mkdirSync(etc);
  writeFileSync(join(etc, 'marker'), 'from the volume\n');
  const out = await probe(
    t,
    ['-v', `${etc}:/etc`, '--tmpfs', '/dev/shm:size=1m', '--hostname', 'box', '--add-host', 'db:10.0.0.5', '--add-host', 'v6:fd00::1'],
    [
      'echo marker=$(cat /etc/marker)',
      'echo hostname=$(cat /etc/hostname)',
      'echo hosts_box=$(grep -c box /etc/hosts)',
      'echo db=$(grep -w db /etc/hosts | tr -s "\\t " " ")',
      'echo v6=$(grep -w v6 /etc/hosts | tr -s "\\t " " ")',
      'echo shm_mounts=$(grep -c " /dev/shm " /proc/self/mountinfo)',
      'echo shm_size=$(df -k /dev/shm | tail -1 | tr -s " " | cut -d" " -f2)',
      'echo fuse=$(test -e /dev/fuse && echo yes || echo no)',
    ].join('; '),
  );
  t.equal(out.fuse, 'no', 'no host devices by default');
  t.equal(out.marker, 'from the volume');
  t.equal(out.hostname, 'box', '/etc/hostname is mounted over the volume');
  t.equal(out.hosts_box, '1', '/etc/hosts too');
  t.equal(out.db, '10.0.0.5 db', '--add-host');
  t.equal(out.v6, 'fd00::1 v6', '--add-host with IPv6');
  t.equal(out.shm_mounts, '1', 'one /dev/shm mount');
  t.equal(out.shm_size, '1024', 'the --tmpfs one');
});

t.test('--mount bind and tmpfs; -v propagation', async (t) => {
  const data = join(scratch, 'data');
  mkdirSync(data);
  writeFileSync(join(data, 'f'), 'data\n');
  const out = await probe(
    t,
    [
      '--mount',
      `type=bind,src=${data},dst=/data,readonly`,
      '--mount',
      'type=tmpfs,dst=/scratch,tmpfs-size=512k,tmpfs-mode=1770',
      '-v',
      `${data}:/shared:rshared`,
    ],
    [
      'echo f=$(cat /data/f)',
      '(echo x > /data/g) 2>/dev/null && echo data=rw || echo data=ro',
      'echo scratch_size=$(df -k /scratch | tail -1 | tr -s " " | cut -d" " -f2)',
      'echo scratch_mode=$(stat -c %a /scratch)',
      'echo shared=$(grep " /shared " /proc/self/mountinfo | grep -c "shared:")',
    ].join('; '),
  );
  t.equal(out.f, 'data');
  t.equal(out.data, 'ro', 'readonly');
  t.equal(out.scratch_size, '512');
  t.equal(out.scratch_mode, '1770');
  t.equal(out.shared, '1', 'rshared: the volume is a shared mount');
  t.notOk(existsSync(join(data, 'g')));

  const missing = await ctrSpawn(latest, ['--mount', `type=bind,src=${join(scratch, 'absent')},dst=/x`, '--', 'true']);
  t.equal(missing.code, 125, 'a --mount source must exist');
  t.match(missing.stderr, /does not exist/);
  t.notOk(existsSync(join(scratch, 'absent')), 'and is not created');
});

t.test('limits: swap as much again as --memory, --memory-swap, --shm-size, --ulimit, --oom-score-adj, --sysctl', async (t) => {
  const memsw = 'echo memsw=$(cat /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.swap.max)';
  const out = await probe(
    t,
    [
      '-m',
      '32m',
      '--shm-size',
      '2m',
      '--ulimit',
      'nofile=100:200',
      '--ulimit',
      'nproc=50',
      '--oom-score-adj',
      '500',
      '--sysctl',
      'net.ipv4.ip_forward=1',
      '--sysctl',
      'kernel.shmmni=1000',
    ],
    [
      memsw,
      'echo nofile_soft=$(ulimit -n)',
      'echo nofile_hard=$(ulimit -Hn)',
      'echo nproc=$(ulimit -u)',
      'echo oom=$(cat /proc/self/oom_score_adj)',
      'echo forward=$(cat /proc/sys/net/ipv4/ip_forward)',
      'echo shmmni=$(cat /proc/sys/kernel/shmmni)',
      'echo shm_size=$(df -k /dev/shm | tail -1 | tr -s " " | cut -d" " -f2)',
    ].join('; '),
  );
  if (swapLimitSupported()) {
    // cgroup v1 counts memory plus swap; v2's swap.max is swap alone.
    const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
    t.equal(out.memsw, String(v2 ? 32 * 1024 * 1024 : 64 * 1024 * 1024), 'as much swap again');
    const set = await probe(t, ['-m', '32m', '--memory-swap', '48m'], memsw);
    t.equal(set.memsw, String(v2 ? 16 * 1024 * 1024 : 48 * 1024 * 1024), '--memory-swap');
  }
  t.equal(out.nofile_soft, '100');
  t.equal(out.nofile_hard, '200');
  t.equal(out.nproc, '50');
  t.equal(out.oom, '500');
  t.equal(out.forward, '1');
  t.equal(out.shmmni, '1000');
  t.equal(out.shm_size, '2048', '--shm-size');
  t.not(readFileSync('/proc/sys/kernel/shmmni', 'utf8').trim(), '1000', "the host's IPC sysctl is untouched");
});

t.test('--device and --privileged give device nodes', async (t) => {
  const devices = 'cat /sys/fs/cgroup/devices/devices.list 2>/dev/null | tr "\\n" ","';
  const fuse = await probe(
    t,
    ['--device', '/dev/fuse', '--device', '/dev/loop0:/dev/xvda:r'],
    ['echo fuse=$(stat -c "%t:%T %F" /dev/fuse)', 'echo xvda=$(stat -c "%t:%T %F" /dev/xvda)', `echo list=$(${devices})`].join('; '),
  );
  t.equal(fuse.fuse, 'a:e5 character special file', '/dev/fuse (10:229)');
  t.equal(fuse.xvda, '7:0 block special file', '/dev/loop0 as /dev/xvda');
  if (fuse.list) {
    t.match(fuse.list, /c 10:229 rwm/, 'the cgroup allows /dev/fuse');
    t.match(fuse.list, /b 7:0 r(,|$)/, 'and the loop device read-only');
  }

  const wanted = ['/dev/fuse', '/dev/loop0', '/dev/kvm', '/dev/net/tun', '/dev/loop-control'].filter((d) => existsSync(d));
  const all = await probe(t, ['--privileged'], [...wanted.map((d) => `test -c ${d} -o -b ${d} && echo ${d}=yes`), status('NoNewPrivs')].join('; '));
  for (const d of wanted) t.equal(all[d], 'yes', `--privileged: ${d}`);
  t.equal(all.NoNewPrivs, '0');
});

t.test('--pid, --ipc, --uts: host and container:NAME', async (t) => {
  const marker = `conveyor-ipc-${process.pid}`;
  writeFileSync(join('/dev/shm', marker), 'x');
  t.teardown(() => rmSync(join('/dev/shm', marker), { force: true }));
  const host = await probe(
    t,
    ['--pid', 'host', '--ipc', 'host', '--uts', 'host'],
    [`echo shm=$(test -e /dev/shm/${marker} && echo host || echo own)`, 'echo pid1=$(test -d /proc/1 && cat /proc/1/comm)', 'echo name=$(hostname)'].join('; '),
  );
  t.equal(host.shm, 'host', "--ipc host: the host's /dev/shm");
  t.equal(host.pid1, readFileSync('/proc/1/comm', 'utf8').trim(), "--pid host: the host's pid 1");
  t.equal(host.name, hostname(), "--uts host: the host's name");

  const other = await startDetached(root, latest, ['--name', 'ns-peer']);
  t.teardown(() => removeDetached(root, other.id));
  const peerPid = JSON.parse(readFileSync(join(root, 'containers', other.id, 'state.json'), 'utf8')).pid as number;
  const joined = await probe(
    t,
    ['--root', root, '--pid', 'container:ns-peer', '--ipc', 'container:ns-peer'],
    ['echo sleeper=$(cat /proc/1/comm)', 'echo ipc=$(readlink /proc/self/ns/ipc)'].join('; '),
  );
  t.equal(joined.sleeper, 'sleep', "--pid container: the other container's init is pid 1");
  t.equal(joined.ipc, readlinkSync(`/proc/${peerPid}/ns/ipc`), "--ipc container: the other container's IPC namespace");

  const none = await ctrSpawn(latest, ['--root', root, '--pid', 'container:no-such', '--', 'true']);
  t.equal(none.code, 125, 'an unknown container to join');
  t.match(none.stderr, /no such container/);
});
