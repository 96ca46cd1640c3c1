/**
 * --net with real busybox containers under runc: the default (pasta here,
 * slirp4netns when asked for by name) configures eth0 and the default route
 * before the container's first command runs; the host's loopback is out of
 * reach unless --add-host NAME:host-gateway; --net private has only lo; the
 * name files (/etc/hosts, /etc/resolv.conf, /etc/hostname) are the
 * container's own; after the run no pasta/slirp4netns process, namespace
 * mount or file of the container is left and the host's links, addresses
 * and routes are as before. Hostile input: forged network.json (a stranger's
 * pid is never signalled), bad --net/--dns values.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTime } from '@conveyor/lib-common/lock';
import { Store } from '@conveyor/lib-common/store';
import { removeContainerFully } from '@conveyor/lib-common/container/remove';
import { NETWORK_FILE, tearDownNetwork } from '@conveyor/lib-common/container/network';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { leftoversOf } from '../../../test/helpers/containers.js';
import { runTool } from '../../../test/helpers/tools.js';
import { hostsFile, parseResolvConf, resolvConf } from '../src/network/names.js';
import { hostDefaultRoute } from '../src/network/slirp.js';
import { containerDirs, ctrSpawn } from './helpers.js';

const root = tempStore('conveyor-network-');
const rootfs = busyboxRootfs(root, 'latest');
const hasPasta = existsSync('/usr/bin/pasta');
const hasSlirp = existsSync('/usr/bin/slirp4netns');

/** The host's network configuration as `ip` shows it, without counters or timers that change by themselves. */
function hostNetwork(): string {
  const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
  return [ip('-o', 'link'), ip('-o', 'addr'), ip('route'), ip('-6', 'route')].join('\n').replace(/valid_lft \S+ preferred_lft \S+/g, '');
}
const before = hostNetwork();

/** pasta, passt and slirp4netns processes whose command line names `needle` (they name the namespace file). */
function helpersNaming(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (/(^|\/)(pasta|passt|slirp4netns)$/.test(argv[0]) && argv.some((a) => a.includes(needle))) found.push(`${pid} ${argv.join(' ')}`);
    } catch {
      // gone
    }
  }
  return found;
}

/** An HTTP GET with busybox nc (the image's static wget crashes in glibc's resolver code). */
// busybox timeout: this pasta (2023-03-09) does not always pass the server's FIN on after nc's own half-close.
const httpGet = (host: string, port: number) => `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 3 ${host} ${port} 2>&1; true`;

let server: Server;
let port = 0;
t.before(async () => {
  server = createServer((_, res) => res.end('host-loopback-secret\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
t.teardown(async () => {
  server.close();
  const store = new Store(root);
  for (const id of containerDirs(root)) await removeContainerFully(store, { id, dir: store.containerDir(id) }).catch(() => undefined);
  removeStore(root);
});

const run = (args: string[], script: string) => ctrSpawn(rootfs, ['--root', root, ...args, '--', 'sh', '-c', script]);

t.test('names: /etc/hosts and /etc/resolv.conf contents', async (t) => {
  t.equal(
    hostsFile({
      hostname: 'web',
      address: '10.0.2.100',
      addHosts: [
        { name: 'db', ip: '10.1.2.3' },
        { name: 'gw', ip: 'host-gateway' },
      ],
      gateway: '10.0.2.2',
    }),
    '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.1.2.3\tdb\n10.0.2.2\tgw\n10.0.2.100\tweb\n',
  );
  t.equal(hostsFile({ hostname: 'web' }), '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tweb\n', 'no address: 127.0.1.1');
  const host = '# generated\nsearch corp.example\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.9.9.9 # office\noptions edns0 trust-ad\n';
  t.strictSame(parseResolvConf(host), { servers: ['127.0.0.53', '::1', '10.9.9.9'], search: ['corp.example'], options: ['edns0', 'trust-ad'] });
  const cases: [string, Parameters<typeof resolvConf>[0], string][] = [
    ["the host's minus loopback", { hostText: host, dns: {}, hostNetwork: false }, 'search corp.example\nnameserver 10.9.9.9\noptions edns0 trust-ad\n'],
    [
      '--net host keeps loopback',
      { hostText: host, dns: {}, hostNetwork: true },
      'search corp.example\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.9.9.9\noptions edns0 trust-ad\n',
    ],
    ['only loopback: the helper', { hostText: 'nameserver 127.0.0.53\n', dns: {}, hostNetwork: false, helperDns: '169.254.1.1' }, 'nameserver 169.254.1.1\n'],
    [
      'only loopback, no helper: Docker fallback',
      { hostText: 'nameserver 127.0.0.1\n', dns: {}, hostNetwork: false },
      'nameserver 8.8.8.8\nnameserver 8.8.4.4\n',
    ],
    ['no host file', { hostText: '', dns: {}, hostNetwork: false }, 'nameserver 8.8.8.8\nnameserver 8.8.4.4\n'],
    [
      '--dns, --dns-search, --dns-option',
      { hostText: host, dns: { servers: ['1.1.1.1'], search: ['a.example', 'b.example'], options: ['ndots:2'] }, hostNetwork: false },
      'search a.example b.example\nnameserver 1.1.1.1\noptions ndots:2\n',
    ],
    ['--dns-search . clears it', { hostText: host, dns: { search: ['.'] }, hostNetwork: false }, 'nameserver 10.9.9.9\noptions edns0 trust-ad\n'],
  ];
  for (const [name, input, expected] of cases) t.equal(resolvConf(input), expected, name);
  const table =
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth1\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\neth1\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n';
  t.strictSame(hostDefaultRoute(table), { iface: 'eth1', gateway: '192.0.2.1' }, "the host's default route, little-endian hex");
  t.equal(hostDefaultRoute('Iface\tDestination\n'), undefined, 'none');
});

t.test('bad network flags: 125 before any record is read', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--net', 'overlay'], /unknown mode/],
    [['--net', 'container:'], /needs a container/],
    [['--net', 'container:web', '--hostname', 'x'], /--hostname conflicts with --net container:/],
    [['--net', 'container:web', '--add-host', 'a:1.2.3.4'], /--add-host conflicts/],
    [['--net', 'container:web', '--dns', '1.1.1.1'], /--dns conflicts/],
    [['--net', 'private', '--add-host', 'gw:host-gateway'], /needs a network/],
    [['--net', 'none', '--add-host', 'gw:host-gateway'], /needs a network/],
    [['--dns', 'resolver.example'], /not an IP address/],
    [['--dns-search', 'bad domain'], /not a domain name/],
    [['--dns-option', 'ndots:2\nnameserver 6.6.6.6'], /not a resolver option/],
  ];
  for (const [flags, message] of cases) {
    const r = await runTool('ctr-spawn', ['--check-flags', ...flags, '--', 'true'], { input: '' });
    t.equal(r.code, 125, flags.join(' '));
    t.match(r.stderr, message);
  }
  // No helper on PATH: asked for by name it is an error; by default the container gets only lo.
  const env = { ...process.env, PATH: '/nonexistent' };
  const slirp = await runTool('ctr-spawn', ['--check-flags', '--net', 'slirp', '--', 'true'], { input: '', env });
  t.equal(slirp.code, 125, '--net slirp without pasta or slirp4netns');
  t.match(slirp.stderr, /pasta or slirp4netns is not installed/);
  const fallback = await runTool('ctr-spawn', ['--check-flags', '--', 'true'], { input: '', env });
  t.equal(fallback.code, 0, 'the default falls back to private');
});

t.test(
  'default network: pasta, eth0 up with its route before the first command, host loopback out of reach',
  { skip: !hasPasta && 'pasta (passt) is not installed' },
  async (t) => {
    const probe = `cat /sys/class/net/eth0/operstate; ip -4 -o addr show eth0 | grep -c inet; grep -c '^eth0\t00000000' /proc/net/route; ${httpGet('127.0.0.1', port)}; ${httpGet('GATEWAY', port)}`;
    const gateway = hostDefaultRoute()!.gateway;
    const r = await run(['--keep'], probe.replace('GATEWAY', gateway));
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n');
    t.strictSame(lines.slice(0, 3), ['unknown', '1', '1'], 'eth0 up (a tap: operstate unknown), an IPv4 address, the default route');
    t.notMatch(r.stdout, /host-loopback-secret/, "the host's 127.0.0.1 is not the container's, nor behind the gateway without host-gateway");
    const id = containerDirs(root).find((d) => existsSync(join(root, 'containers', d, 'state.json')))!;
    const state = JSON.parse(readFileSync(join(root, 'containers', id, 'state.json'), 'utf8'));
    t.equal(state.network, 'pasta', 'state.json says which');
    t.strictSame(helpersNaming(join(root, 'containers', id)), [], 'pasta stopped with the container');
    t.strictSame(leftoversOf(root, id), [`directory ${join(root, 'containers', id)}`], '--keep: the directory only, no namespace mount');
    t.notOk(existsSync(join(root, 'containers', id, 'netns')), 'the namespace file is gone');
    await removeContainerFully(new Store(root), { id, dir: join(root, 'containers', id) });

    const detached = await runTool('ctr-spawn', ['--root', root, '-d', '--', 'sleep', '30'], { input: `${JSON.stringify(rootfs)}\n` });
    const record = detached.records.find((rec) => rec.type === 'container');
    t.equal(record?.network, 'pasta', 'the container record says which');
    t.match(helpersNaming(join(root, 'containers', record!.id)), [/pasta/], 'its pasta runs while it does');
    const rm = await runTool('ctr-rm', ['--root', root, '-f', record!.id]);
    t.equal(rm.code, 0, rm.stderr);
    t.strictSame(helpersNaming(join(root, 'containers', record!.id)), [], 'ctr-rm stopped its pasta');
    t.strictSame(leftoversOf(root, record!.id), []);
  },
);

for (const backend of ['pasta', 'slirp4netns'] as const) {
  const skip = backend === 'pasta' ? !hasPasta && 'pasta (passt) is not installed' : !hasSlirp && 'slirp4netns is not installed';
  t.test(`--net ${backend}: the host's loopback only through --add-host NAME:host-gateway`, { skip }, async (t) => {
    // By address: the image's static busybox cannot look names up (static glibc NSS); /etc/hosts is checked apart.
    const gateway = backend === 'pasta' ? hostDefaultRoute()!.gateway : '10.0.2.2';
    const fetch = httpGet(gateway, port);
    const reached = await run(['--net', backend, '--add-host', 'host.containers.internal:host-gateway'], `grep host.containers.internal /etc/hosts; ${fetch}`);
    t.equal(reached.code, 0, reached.stderr);
    t.match(reached.stdout, /host-loopback-secret/, 'reached the test server on 127.0.0.1');
    t.match(reached.stdout, new RegExp(`^${gateway.replace(/\./g, '\\.')}\thost\\.containers\\.internal$`, 'm'), 'host-gateway is the gateway address');
    const refused = await run(['--net', backend, '--add-host', `host.containers.internal:${gateway}`], fetch);
    t.notMatch(refused.stdout, /host-loopback-secret/, 'the same address without host-gateway does not reach it');
    if (backend === 'slirp4netns') {
      const shown = await run(['--net', backend], 'ip -4 -o addr show eth0; ip route');
      t.match(shown.stdout, /inet 10\.0\.2\.100\/24/);
      t.match(shown.stdout, /default via 10\.0\.2\.2 dev eth0/);
    }
    t.strictSame(helpersNaming(join(root, 'containers')), [], `no ${backend} left`);
  });
}

t.test('--net private (and none): only lo, which is up', async (t) => {
  for (const net of ['private', 'none']) {
    const r = await run(['--net', net], 'ls /sys/class/net; cat /sys/class/net/lo/operstate; ping -c1 -W1 127.0.0.1 >/dev/null && echo pinged');
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stdout, 'lo\nunknown\npinged\n', net);
  }
});

t.test("name files: the container's own copies", async (t) => {
  const hostResolv = readFileSync('/etc/resolv.conf', 'utf8');
  const r = await run(
    ['--hostname', 'web1', '--add-host', 'db:10.1.2.3', '--dns', '192.0.2.53', '--dns-search', 'corp.example', '--dns-option', 'ndots:2'],
    'cat /etc/hostname /etc/hosts /etc/resolv.conf; echo nameserver 6.6.6.6 >> /etc/resolv.conf && echo appended',
  );
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^web1\n127\.0\.0\.1\tlocalhost\n/);
  t.match(r.stdout, /^10\.1\.2\.3\tdb$/m);
  t.match(r.stdout, /^\S+\tweb1$/m, 'the hostname on its address');
  t.match(r.stdout, /search corp\.example\nnameserver 192\.0\.2\.53\noptions ndots:2\nappended\n$/);
  t.equal(readFileSync('/etc/resolv.conf', 'utf8'), hostResolv, "the host's resolv.conf is untouched");
  const byDefault = await run([], 'cat /etc/resolv.conf');
  const expected = hostResolv
    .split('\n')
    .filter((l) => /^nameserver\s/.test(l) && !/^nameserver\s+(127\.|::1)/.test(l))
    .map((l) => l.replace(/\s+/g, ' ').trim());
  for (const line of expected) t.match(byDefault.stdout, line, `the host's ${line}`);
  t.notMatch(byDefault.stdout, /nameserver (127\.|::1)/, 'no loopback resolver');
});

t.test("hostile: a forged network.json naming a stranger's pid never kills it", async (t) => {
  const stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => stranger.kill('SIGKILL'));
  await sleep(50);
  const pid = stranger.pid!;
  const dir = join(root, 'forged');
  mkdirSync(dir, { recursive: true });
  const forgeries = [
    { name: 'pasta', pid, startTime: startTime(pid) }, // right pid and start time, but not a network helper
    { name: 'slirp4netns', pid, startTime: '1' }, // a recycled pid (another start time)
    { name: 'pasta', pid }, // no start time to check
    { name: 'sh', pid, startTime: startTime(pid) }, // not a helper's name
    { name: 'pasta', pid: 1, startTime: startTime(1) }, // init
  ];
  for (const forged of forgeries) {
    writeFileSync(join(dir, NETWORK_FILE), JSON.stringify(forged));
    t.strictSame(await tearDownNetwork(dir), [], JSON.stringify(forged));
    t.equal(stranger.exitCode, null, 'the stranger runs on');
    t.notOk(existsSync(join(dir, NETWORK_FILE)), 'the record is removed');
  }
  // The same through ctr-rm of a leftover container directory.
  const id = 'f'.repeat(64);
  const leftover = join(root, 'containers', id);
  mkdirSync(leftover, { recursive: true });
  writeFileSync(join(leftover, NETWORK_FILE), JSON.stringify({ name: 'pasta', pid, startTime: startTime(pid) }));
  const rm = await runTool('ctr-rm', ['--root', root, '-f', id]);
  t.equal(rm.code, 0, rm.stderr);
  t.equal(stranger.exitCode, null, 'ctr-rm did not kill it either');
  t.notOk(existsSync(leftover));
});

t.test("the host's network configuration is as before", async (t) => {
  t.equal(hostNetwork(), before, 'ip link, ip addr, ip route unchanged');
  t.strictSame(helpersNaming(join(root, 'containers')), [], 'no helper of ours runs');
  t.strictSame(
    readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(root)),
    [],
    'nothing of the store is mounted',
  );
});
