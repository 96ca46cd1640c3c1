/**
 * Published ports on real containers (busybox httpd, a static UDP echo built
 * from fixtures/udp-echo.c): -p 127.0.0.1:PORT:80 answers curl on the host,
 * -p …/udp echoes, -P publishes the image's ExposedPorts on free ports and
 * the record and ctr-ls report them, a taken port fails the run with 125 and
 * starts nothing, the port is free again when the container ends (foreground,
 * and detached through ctr-stop and ctr-rm) and when its supervisor is
 * SIGKILLed, and -p's bad values are refused (through conveyor-run too).
 * Every published address is 127.0.0.1 but -P's (Docker's default: all
 * addresses); the test talks to it over 127.0.0.1 only.
 */
import t from 'tap';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { deleteAllContainers, removeDetached, stateOf, waitForState } from '../../../test/helpers/containers.js';
import { REPO_ROOT } from '../../../test/helpers/fixtures.js';
import { freePort } from '../../../test/helpers/registry.js';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, toolPath } from '../../../test/helpers/tools.js';
import { containerDirs } from './helpers.js';

if (process.getuid?.() !== 0) {
  t.skip('needs root: containers');
  process.exit(0);
}

const root = tempStore('conveyor-ports-');
const rootfs = busyboxRootfs(root, 'latest');
// Bind-mounted at /probe: the page httpd serves, the UDP echo, and the file that ends a foreground container.
const probe = mkdtempSync('/tmp/conveyor-ports-probe-');
chmodSync(probe, 0o755);
mkdirSync(join(probe, 'www'));
writeFileSync(join(probe, 'www', 'index.html'), 'served from the container\n');
execFileSync('gcc', ['-static', '-O2', '-o', join(probe, 'udp-echo'), join(REPO_ROOT, 'tools', 'ctr-spawn', 'test', 'fixtures', 'udp-echo.c')], {
  stdio: ['ignore', 'ignore', 'inherit'],
});
const SERVE = '/probe/udp-echo 53 & exec busybox httpd -f -p 80 -h /probe/www';
t.teardown(async () => {
  await deleteAllContainers(root);
  removeStore(root);
  rmSync(probe, { recursive: true, force: true });
});

function curl(port: number): string {
  try {
    return execFileSync('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${port}/`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    return `curl failed: ${(error as { stderr?: string }).stderr ?? error}`;
  }
}

/**
 * How a TCP connection to 127.0.0.1:PORT ends: the connect's error code, or 'closed'.
 * Not curl: when the peer resets right after the handshake (the relay does for a
 * port nobody listens on inside), curl may find ECONNRESET in SO_ERROR before it
 * has seen the connect succeed and reports "(7) Failed to connect" as for a port
 * nobody listens on. The kernel does tell them apart: ECONNREFUSED only for a reset
 * answering the SYN, ECONNRESET once the handshake is done.
 */
function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(5000, () => socket.destroy(new Error('timeout')));
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    socket.on('close', () => resolve('closed'));
  });
}

function udpEcho(port: number, text: string): Promise<string> {
  const socket = dgram.createSocket('udp4');
  return new Promise((resolve) => {
    // The echo may not be bound yet right after the start: ask again until it answers.
    const ask = setInterval(() => socket.send(text, port, '127.0.0.1'), 200);
    const give = setTimeout(() => finish('no reply'), 5000);
    const finish = (reply: string) => {
      clearInterval(ask);
      clearTimeout(give);
      socket.close();
      resolve(reply);
    };
    socket.on('message', (reply) => finish(reply.toString()));
    socket.send(text, port, '127.0.0.1');
  });
}

async function bindable(port: number, protocol: 'tcp' | 'udp' = 'tcp', host = '127.0.0.1'): Promise<boolean> {
  if (protocol === 'udp') {
    const socket = dgram.createSocket('udp4');
    return new Promise((resolve) => {
      socket.once('error', () => resolve(false));
      socket.bind(port, host, () => socket.close(() => resolve(true)));
    });
  }
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

async function eventually(check: () => Promise<boolean> | boolean, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(100);
  }
  return check();
}

/** Polls httpd through the published port until it answers (it starts after the container does). */
async function served(port: number): Promise<string> {
  let last = '';
  await eventually(() => (last = curl(port)) === 'served from the container\n');
  return last;
}

t.test('detached: -p tcp and udp answer on the host; ctr-ls shows them; ctr-stop frees them', async (t) => {
  const port = await freePort();
  const run = await runTool(
    'ctr-spawn',
    ['--root', root, '-d', '--name', 'web', '-p', `127.0.0.1:${port}:80`, '-p', '127.0.0.1::53/udp', '-v', `${probe}:/probe:ro`, '--', 'sh', '-c', SERVE],
    {
      input: `${JSON.stringify(rootfs)}\n`,
    },
  );
  t.equal(run.code, 0, run.stderr);
  const record = run.records[0];
  t.equal(record.ports.length, 2);
  t.strictSame(record.ports[0], { hostIP: '127.0.0.1', hostPort: port, containerPort: 80, protocol: 'tcp' });
  t.match(record.ports[1], { hostIP: '127.0.0.1', containerPort: 53, protocol: 'udp' });
  const udpPort = record.ports[1].hostPort;
  t.ok(udpPort > 0, 'the free UDP port is resolved in the record');
  t.strictSame(stateOf(root, record.id)?.ports, record.ports, 'state.json holds the same ports');
  t.equal(await served(port), 'served from the container\n', 'curl on the host reaches httpd in the container');
  t.equal(await udpEcho(udpPort, 'ping'), 'ping', 'UDP echoed through the published port');

  const table = await runTool('ctr-ls', ['--root', root, '--table']);
  t.match(table.stdout, new RegExp(`127\\.0\\.0\\.1:${port}->80/tcp, 127\\.0\\.0\\.1:${udpPort}->53/udp +web`), 'the PORTS column');
  const listed = await runTool('ctr-ls', ['--root', root, '--filter', 'name=web']);
  t.strictSame(listed.records[0]?.ports, record.ports);

  const stop = await runTool('ctr-stop', ['--root', root, '-t', '1', 'web']);
  t.equal(stop.code, 0, stop.stderr);
  t.ok(await eventually(() => bindable(port)), 'the TCP port is free once the container ended');
  t.ok(await eventually(() => bindable(udpPort, 'udp')), 'the UDP port too');
  const rm = await runTool('ctr-rm', ['--root', root, 'web']);
  t.equal(rm.code, 0, rm.stderr);
});

t.test('foreground: -P publishes the image ExposedPorts, -p wins for its port; all freed when it exits', async (t) => {
  const port = await freePort();
  const image = { ...rootfs, config: { ...rootfs.config, ExposedPorts: { '80/tcp': {}, '53/udp': {}, '8443/tcp': {} } } };
  const stopFile = join(probe, 'stop-fg');
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--',
      toolPath('ctr-spawn'),
      '--root',
      root,
      '--name',
      'fg',
      '-P',
      '-p',
      `127.0.0.1:${port}:80`,
      '-v',
      `${probe}:/probe`,
      '--',
      'sh',
      '-c',
      `/probe/udp-echo 53 & busybox httpd -p 80 -h /probe/www; while [ ! -e /probe/stop-fg ]; do sleep 0.1; done`,
    ],
    { stdio: ['pipe', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdin!.end(`${JSON.stringify(image)}\n`);
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

  // A foreground run's ports are in state.json too: ctr-ls shows them while it runs.
  let ports: { hostIP: string; hostPort: number; containerPort: number; protocol: string }[] = [];
  await eventually(async () => {
    ports = (await runTool('ctr-ls', ['--root', root, '--filter', 'name=fg'])).records[0]?.ports ?? [];
    return ports.length > 0;
  });
  t.equal(ports.length, 3, stderr);
  const byPort = Object.fromEntries(ports.map((p) => [`${p.containerPort}/${p.protocol}`, p]));
  t.strictSame(byPort['80/tcp'], { hostIP: '127.0.0.1', hostPort: port, containerPort: 80, protocol: 'tcp' }, '-p wins over -P for 80');
  t.match(byPort['53/udp'], { hostIP: '0.0.0.0', protocol: 'udp' }, '-P: all addresses, as Docker');
  t.ok(byPort['53/udp'].hostPort > 0 && byPort['8443/tcp'].hostPort > 0, '-P: free host ports, resolved');
  t.equal(await served(port), 'served from the container\n');
  t.equal(await udpEcho(byPort['53/udp'].hostPort, 'hello -P'), 'hello -P');
  t.equal(await connectOutcome(byPort['8443/tcp'].hostPort), 'ECONNRESET', 'nobody listens on 8443 inside: accepted on the host, then reset');

  writeFileSync(stopFile, '');
  t.equal(await exit, 0, stderr);
  // ctr-spawn closes the forwarder before it exits: free at once, no waiting.
  t.ok(await bindable(port), 'the -p port is free when ctr-spawn has exited');
  t.ok(await bindable(byPort['53/udp'].hostPort, 'udp', '0.0.0.0'), 'and the -P ones');
  t.ok(await bindable(byPort['8443/tcp'].hostPort, 'tcp', '0.0.0.0'));
  rmSync(stopFile, { force: true });
});

t.test('a taken port: exit 125 with ERR_PORT_UNAVAILABLE, nothing started or left', async (t) => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const taken = (holder.address() as net.AddressInfo).port;
  const before = containerDirs(root).length;
  for (const mode of [[], ['-d']]) {
    const run = await runTool('ctr-spawn', ['--root', root, '--log-format', 'json', ...mode, '-p', `127.0.0.1:${taken}:80`, '--', 'true'], {
      input: `${JSON.stringify(rootfs)}\n`,
    });
    t.equal(run.code, 125, `${mode.join(' ') || 'foreground'}: ${run.stderr}`);
    t.match(
      run.logs.find((l) => l.code),
      { code: 'ERR_PORT_UNAVAILABLE', message: new RegExp(`127\\.0\\.0\\.1:${taken}/tcp`) },
    );
    t.equal(containerDirs(root).length, before, 'no container left behind');
  }
  holder.close();
});

t.test('a SIGKILLed supervisor: the relay ends with it and the port is free', async (t) => {
  // --net private (only lo): ports need no userspace network, only a namespace of the container's own.
  const run = await runTool(
    'ctr-spawn',
    ['--root', root, '-d', '--net', 'private', '-p', '127.0.0.1::80', '-v', `${probe}:/probe:ro`, '--', 'sh', '-c', SERVE],
    {
      input: `${JSON.stringify(rootfs)}\n`,
    },
  );
  t.equal(run.code, 0, run.stderr);
  const { id, ports, network } = run.records[0];
  t.equal(network, 'private');
  const port = ports[0].hostPort;
  t.equal(await served(port), 'served from the container\n');
  const state = await waitForState(root, id, (s) => Boolean(s?.supervisor?.pid));
  process.kill(state!.supervisor.pid, 'SIGKILL');
  t.ok(await eventually(() => bindable(port)), 'the port is free after the supervisor died');
  await removeDetached(root, id);
  t.notOk(existsSync(join(root, 'containers', id)));
});

t.test('bad -p values and -p with --net host are refused (ctr-spawn and conveyor-run)', async (t) => {
  const bad: [string[], RegExp][] = [
    [['-p', '0'], /out of range/],
    [['-p', '65536'], /out of range/],
    [['-p', 'http'], /bad container port/],
    [['-p', '::1:8080:80'], /too many fields/],
    [['-p', '1-5000'], /more than 1024/],
    [['-p', '8080:80', '-p', '8080:81'], /published twice/],
    [['--net', 'host', '-p', '8080:80'], /conflict with --net host/],
    [['--net', 'host', '-P'], /conflict with --net host/],
  ];
  for (const [args, message] of bad) {
    const run = await runTool('ctr-spawn', ['--root', root, '--check-flags', ...args]);
    t.equal(run.code, 125, args.join(' '));
    t.match(run.stderr, message, args.join(' '));
  }
  t.equal((await runTool('ctr-spawn', ['--root', root, '--check-flags', '-p', '127.0.0.1::80/udp', '-P'])).code, 0, 'good values pass');
  // conveyor-run takes ctr-spawn's flags from its flag list: -p reaches ctr-spawn's check before any pull.
  const viaRun = spawn(process.execPath, ['--', join(REPO_ROOT, 'scripts', 'run.mjs'), '--root', root, '-p', '99999:80', 'busybox'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  viaRun.stderr!.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => viaRun.on('exit', resolve));
  t.equal(code, 125);
  t.match(stderr, /-p 99999:80: host port 99999 is out of range/);
});
