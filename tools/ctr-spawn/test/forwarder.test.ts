/**
 * The port forwarder (ports/forwarder.ts, relay.ts) on a network namespace
 * this test makes itself (`unshare --net=FILE`), with servers inside started
 * by nsenter: TCP relayed with half-close, a refused port reset (after the
 * handshake, never refused, for many clients at once), UDP
 * datagrams relayed per client, 200 concurrent connections, a taken port
 * refused with nothing left bound, close() and a SIGKILLed owner freeing the
 * ports. Everything stays on loopback and inside the namespace.
 */
import t from 'tap';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
// The built module: the relay it starts is dist/ports/relay.js beside it.
import { startForwarder } from '../dist/ports/forwarder.js';
import type { PortMapping } from '../src/ports/publish.js';

if (process.getuid?.() !== 0) {
  t.skip('needs root: unshare --net and nsenter');
  process.exit(0);
}

const work = mkdtempSync('/tmp/conveyor-forwarder-');
const netns = join(work, 'netns');
writeFileSync(netns, '');
execFileSync('unshare', [`--net=${netns}`, 'true']);
execFileSync('nsenter', [`--net=${netns}`, 'ip', 'link', 'set', 'lo', 'up']);

// Inside: TCP 7000 answers what it read, upper-cased, after the client's end (a half-close test);
// TCP 7002 sends 1 MB and ends; UDP 7001 echoes each datagram, prefixed with its sender's port.
const SERVERS = `
const net = require('node:net'), dgram = require('node:dgram');
net.createServer({ allowHalfOpen: true }, (s) => { let b = ''; s.on('data', (d) => (b += d)); s.on('end', () => s.end(b.toUpperCase())); }).listen(7000, '127.0.0.1');
net.createServer((s) => s.end(Buffer.alloc(1 << 20, 120))).listen(7002, '127.0.0.1');
const u = dgram.createSocket('udp4'); u.on('message', (m, r) => u.send(Buffer.concat([Buffer.from(r.port + ':'), m]), r.port, r.address)); u.bind(7001, '127.0.0.1');
setTimeout(() => process.stdout.write('ready\\n'), 100);
`;
const servers = spawn('nsenter', [`--net=${netns}`, process.execPath, '-e', SERVERS], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise<void>((resolve) => servers.stdout!.once('data', () => resolve()));

t.teardown(() => {
  servers.kill('SIGKILL');
  for (let i = 0; i < 20; i++) {
    try {
      execFileSync('umount', [netns], { stdio: 'ignore' });
      break;
    } catch {
      execFileSync('sleep', ['0.1']);
    }
  }
  rmSync(work, { recursive: true, force: true });
});

const tcp = (containerPort: number, hostPort = 0): PortMapping => ({ hostIP: '127.0.0.1', hostPort, containerPort, protocol: 'tcp' });
const udp = (containerPort: number, hostPort = 0): PortMapping => ({ hostIP: '127.0.0.1', hostPort, containerPort, protocol: 'udp' });

/** Sends `text`, half-closes, and resolves to everything read back (or the error code). */
function exchange(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let got = '';
    socket.on('connect', () => socket.end(text));
    socket.on('data', (d) => (got += d));
    socket.on('end', () => resolve(got));
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(`error ${error.code}`));
  });
}

function datagram(port: number, text: string, from?: dgram.Socket): Promise<string> {
  const socket = from ?? dgram.createSocket('udp4');
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reply')), 3000);
    socket.once('message', (reply) => {
      clearTimeout(timer);
      if (!from) socket.close();
      resolve(reply.toString());
    });
    socket.send(text, port, '127.0.0.1');
  });
}

/** Whether `port` on 127.0.0.1 can be bound for `protocol` (that is: nobody holds it). */
async function bindable(port: number, protocol: 'tcp' | 'udp' = 'tcp'): Promise<boolean> {
  if (protocol === 'udp') {
    const socket = dgram.createSocket('udp4');
    return new Promise((resolve) => {
      socket.once('error', () => resolve(false));
      socket.bind(port, '127.0.0.1', () => socket.close(() => resolve(true)));
    });
  }
  const server = net.createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function eventually(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await sleep(50);
  }
  return check();
}

t.test('TCP and UDP relayed into the namespace; close() frees the ports', async (t) => {
  const forwarder = await startForwarder({ execPath: process.execPath, netnsPath: netns, mappings: [tcp(7000), tcp(7009), udp(7001), tcp(7002)] });
  const [half, refused, echo, bulk] = forwarder.ports;
  t.ok(
    forwarder.ports.every((p) => p.hostPort > 0),
    'free ports resolved',
  );
  t.not(half.hostPort, 7000, 'a host port the kernel picked, not the container port');
  t.equal(await exchange(half.hostPort, 'hello relay'), 'HELLO RELAY', 'half-close passed on: the answer comes after our end');
  t.equal(await exchange(refused.hostPort, 'x'), 'error ECONNRESET', 'nobody listens inside: the client is reset');
  const bulkBytes = (await exchange(bulk.hostPort, '')).length;
  t.equal(bulkBytes, 1 << 20, '1 MB relayed whole');
  // Two clients: each gets its own flow inside (the server sees two source ports).
  const a = dgram.createSocket('udp4');
  const b = dgram.createSocket('udp4');
  const replyA = await datagram(echo.hostPort, 'from a', a);
  const replyB = await datagram(echo.hostPort, 'from b', b);
  t.match(replyA, /^\d+:from a$/);
  t.match(replyB, /^\d+:from b$/);
  t.not(replyA.split(':')[0], replyB.split(':')[0], 'one flow per client');
  t.equal(await datagram(echo.hostPort, 'again', a), `${replyA.split(':')[0]}:again`, 'a client keeps its flow');
  a.close();
  b.close();
  t.equal(await bindable(half.hostPort), false, 'the port is held while the forwarder runs');
  await forwarder.close();
  await forwarder.close();
  t.ok(await bindable(half.hostPort), 'TCP port free after close()');
  t.ok(await bindable(echo.hostPort, 'udp'), 'UDP port free after close()');
});

t.test('a port nobody listens on inside: every client is accepted on the host, then reset; the listener stays', async (t) => {
  // ports.test.ts once read curl's "(7) Failed to connect" here as a host socket not listening: it was
  // curl finding this reset (ECONNRESET in SO_ERROR) before it saw its connect succeed. The kernel says
  // ECONNREFUSED only for a SYN nobody accepts, so no client of a published port may ever get it.
  const forwarder = await startForwarder({ execPath: process.execPath, netnsPath: netns, mappings: [tcp(7009), tcp(7000)] });
  const [refused, half] = forwarder.ports;
  const outcomes: string[] = [];
  for (let round = 0; round < 5; round++) {
    // Ten at once, then the next ten: resets racing new handshakes on the same listener.
    outcomes.push(...(await Promise.all(Array.from({ length: 10 }, () => exchange(refused.hostPort, 'x')))));
  }
  t.strictSame([...new Set(outcomes)], ['error ECONNRESET'], '50 clients: reset after the handshake, none refused');
  t.equal(await exchange(half.hostPort, 'still here'), 'STILL HERE', 'the other port is untouched');
  t.equal(await bindable(refused.hostPort), false, 'the reset port is still published');
  await forwarder.close();
});

t.test('an IPv6 host address: [::1] relayed to 127.0.0.1 inside', async (t) => {
  const forwarder = await startForwarder({
    execPath: process.execPath,
    netnsPath: netns,
    mappings: [
      { ...tcp(7000), hostIP: '::1' },
      { ...udp(7001), hostIP: '::1' },
    ],
  });
  const [stream, datagrams] = forwarder.ports;
  const answer = await new Promise<string>((resolve) => {
    const socket = net.connect({ host: '::1', port: stream.hostPort, allowHalfOpen: true });
    let got = '';
    socket.on('connect', () => socket.end('six'));
    socket.on('data', (d) => (got += d));
    socket.on('end', () => resolve(got));
    socket.on('error', (error) => resolve(String(error)));
  });
  t.equal(answer, 'SIX');
  const socket = dgram.createSocket('udp6');
  const reply = await new Promise<string>((resolve) => {
    socket.once('message', (m) => resolve(String(m)));
    socket.send('six', datagrams.hostPort, '::1');
  });
  socket.close();
  t.match(reply, /^\d+:six$/);
  await forwarder.close();
});

t.test('200 concurrent connections all relayed', async (t) => {
  const forwarder = await startForwarder({ execPath: process.execPath, netnsPath: netns, mappings: [tcp(7000)] });
  const port = forwarder.ports[0].hostPort;
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => exchange(port, `c${i}`)));
  t.strictSame(
    answers,
    Array.from({ length: 200 }, (_, i) => `C${i}`),
  );
  await forwarder.close();
});

t.test('a taken port: ERR_PORT_UNAVAILABLE, nothing left bound', async (t) => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const taken = (holder.address() as net.AddressInfo).port;
  // A free port first, so that the failure must undo a bind that succeeded.
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const first = (probe.address() as net.AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  await t.rejects(startForwarder({ execPath: process.execPath, netnsPath: netns, mappings: [tcp(7000, first), tcp(7000, taken)] }), {
    code: 'ERR_PORT_UNAVAILABLE',
    message: new RegExp(`127\\.0\\.0\\.1:${taken}/tcp.*EADDRINUSE`),
  });
  t.ok(await bindable(first), 'the port bound before the failure is free again');
  // A host range (-p 127.0.0.1:A-B:80): the first free port of it.
  const ranged = await startForwarder({ execPath: process.execPath, netnsPath: netns, mappings: [{ ...tcp(7000, taken), hostPortEnd: taken + 50 }] });
  t.ok(ranged.ports[0].hostPort > taken && ranged.ports[0].hostPort <= taken + 50, 'the taken port skipped');
  t.notOk('hostPortEnd' in ranged.ports[0], 'resolved to one port');
  t.equal(await exchange(ranged.ports[0].hostPort, 'ranged'), 'RANGED');
  await ranged.close();
  await t.rejects(startForwarder({ execPath: process.execPath, netnsPath: netns, mappings: [{ ...tcp(7000, taken), hostPortEnd: taken }] }), {
    code: 'ERR_PORT_UNAVAILABLE',
    message: /every port of the range is taken/,
  });
  await t.rejects(startForwarder({ execPath: process.execPath, netnsPath: netns, mappings: [{ ...tcp(7000), hostIP: '192.0.2.77' }] }), {
    code: 'ERR_PORT_UNAVAILABLE',
    message: /EADDRNOTAVAIL/,
  });
  holder.close();
});

t.test('a namespace that is not there: ERR_SPAWN_FAILED, the port free', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  await t.rejects(startForwarder({ execPath: process.execPath, netnsPath: join(work, 'missing'), mappings: [tcp(7000, port)] }), { code: 'ERR_SPAWN_FAILED' });
  t.ok(await bindable(port));
});

t.test('a SIGKILLed owner: the relay ends and the ports are free', async (t) => {
  const owner: ChildProcess = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      // The built module: the relay it starts is the built relay.js beside it.
      `const { startForwarder } = await import(${JSON.stringify(new URL('../dist/ports/forwarder.js', import.meta.url).href)});
       const f = await startForwarder({ execPath: process.execPath, netnsPath: ${JSON.stringify(netns)}, mappings: [
         { hostIP: '127.0.0.1', hostPort: 0, containerPort: 7000, protocol: 'tcp' },
         { hostIP: '127.0.0.1', hostPort: 0, containerPort: 7001, protocol: 'udp' }] });
       console.log(JSON.stringify(f.ports)); setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const ports = await new Promise<PortMapping[]>((resolve) => owner.stdout!.once('data', (d) => resolve(JSON.parse(String(d)))));
  t.equal(await exchange(ports[0].hostPort, 'alive'), 'ALIVE', 'relayed while the owner lives');
  owner.kill('SIGKILL');
  t.ok(await eventually(() => bindable(ports[0].hostPort)), 'TCP port free after the owner died');
  t.ok(await eventually(() => bindable(ports[1].hostPort, 'udp')), 'UDP port free after the owner died');
});
