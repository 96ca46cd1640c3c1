/**
 * The scheme probe (Transport.speaksTls) without node:tls: its ClientHello is
 * a well-formed TLS record (table-checked), the first byte of an answer is
 * read as TLS or not, and real servers are told apart: the Debian
 * docker-registry with and without TLS, Node's HTTPS and HTTP servers (the
 * fault proxy), a server that closes at once, and a closed port (an error,
 * not "plain HTTP").
 */
import { createServer, type AddressInfo } from 'node:net';
import t from 'tap';
import { answersTls, clientHello } from '../src/tls-hello.js';
import { Transport } from '../src/transport.js';
import { startFaultProxy, startRegistry } from '../../../test/helpers/registry.js';

const fixedRandom = (bytes: number) => Buffer.alloc(bytes, 0xab);

/** The SNI host name a ClientHello carries, or undefined; throws when a length does not add up. */
function parseHello(record: Buffer): { sni?: string; suites: number } {
  if (record[0] !== 0x16 || record.readUInt16BE(1) !== 0x0301) throw new Error('not a TLS handshake record');
  if (record.readUInt16BE(3) !== record.length - 5) throw new Error('record length');
  const hs = record.subarray(5);
  if (hs[0] !== 0x01) throw new Error('not a ClientHello');
  if (hs.readUIntBE(1, 3) !== hs.length - 4) throw new Error('handshake length');
  let at = 4;
  if (hs.readUInt16BE(at) !== 0x0303) throw new Error('legacy version');
  at += 2 + 32;
  at += 1 + hs[at];
  const suitesLength = hs.readUInt16BE(at);
  at += 2 + suitesLength;
  at += 1 + hs[at];
  const extensionsEnd = at + 2 + hs.readUInt16BE(at);
  if (extensionsEnd !== hs.length) throw new Error('extensions length');
  at += 2;
  let sni: string | undefined;
  while (at < extensionsEnd) {
    const type = hs.readUInt16BE(at);
    const length = hs.readUInt16BE(at + 2);
    const body = hs.subarray(at + 4, at + 4 + length);
    if (type === 0) sni = body.subarray(5, 5 + body.readUInt16BE(3)).toString('ascii');
    at += 4 + length;
  }
  if (at !== extensionsEnd) throw new Error('an extension overruns');
  return { sni, suites: suitesLength / 2 };
}

t.test('the ClientHello is one well-formed TLS record', async (t) => {
  const cases: [string, string | undefined][] = [
    ['no server name (an IP address)', undefined],
    ['a server name', 'registry.example'],
    ['a long server name', `${'a'.repeat(60)}.${'b'.repeat(60)}.example`],
  ];
  for (const [name, servername] of cases) {
    const parsed = parseHello(clientHello(fixedRandom, servername));
    t.equal(parsed.sni, servername, `${name}: SNI`);
    t.equal(parsed.suites, 13, `${name}: cipher suites`);
  }
});

t.test('the first byte of the answer tells TLS', async (t) => {
  const cases: [string, Buffer, boolean][] = [
    ['a handshake record', Buffer.from([0x16, 0x03, 0x03, 0x00, 0x7a]), true],
    ['an alert record', Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02]), true],
    ['an HTTP answer', Buffer.from('HTTP/1.1 400 Bad Request\r\n'), false],
    ['nothing', Buffer.alloc(0), false],
    ['garbage', Buffer.from([0x00, 0x01]), false],
  ];
  for (const [name, first, tls] of cases) t.equal(answersTls(first), tls, name);
});

t.test('real servers are told apart', async (t) => {
  const plain = await startRegistry();
  t.teardown(() => plain.stop());
  const secure = await startRegistry({ tls: true });
  t.teardown(() => secure.stop());
  const nodeHttp = await startFaultProxy(plain.url);
  t.teardown(() => nodeHttp.stop());
  const nodeHttps = await startFaultProxy(plain.url, undefined, { tls: true });
  t.teardown(() => nodeHttps.stop());
  const closer = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => closer.listen(0, '127.0.0.1', resolve));
  t.teardown(() => closer.close());
  const closedPort = createServer();
  await new Promise<void>((resolve) => closedPort.listen(0, '127.0.0.1', resolve));
  const unused = (closedPort.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closedPort.close(() => resolve()));

  const transport = new Transport({ timeoutMs: 10_000 });
  t.teardown(() => transport.close());
  const probe = (host: string) => transport.speaksTls(new URL(`https://${host}/v2/`));
  t.equal(await probe(plain.host), false, 'docker-registry over plain HTTP');
  t.equal(await probe(secure.host), true, 'docker-registry over TLS');
  t.equal(await probe(nodeHttp.host), false, "Node's HTTP server");
  t.equal(await probe(nodeHttps.host), true, "Node's HTTPS server");
  t.equal(await probe(`127.0.0.1:${(closer.address() as AddressInfo).port}`), false, 'a server that closes at once');
  await t.rejects(probe(`127.0.0.1:${unused}`), { code: 'ECONNREFUSED' }, 'a closed port is an error');
});
