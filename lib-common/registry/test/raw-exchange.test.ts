/**
 * The raw-socket blob path (src/raw-exchange.ts) under faults a real
 * registry does not make on its own, end to end through fetchBlobToStore:
 * a scripted server writes exact bytes (a chunked body, a head split across
 * reads, more than Content-Length, a connection closed mid-head or mid-body,
 * a response that is not HTTP, a stall), and the blob lands verified in the
 * store or fails with the stable code. Also: the path is really taken
 * (openBlob answers a RawResponse; CONVEYOR_RAW_BLOBS=0's rawBlobs:false
 * does not), TLS with a custom CA (refused without it), a redirect to a
 * blob host after a Basic challenge, which gets no Authorization, the
 * client's close() ending an exchange nobody read, an abort mid-body, and a
 * header value with a line break refused before anything is sent.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { Store } from '@conveyor/lib-common/store';
import { fetchBlobToStore } from '../src/blob.js';
import { RegistryClient, type RegistryClientOptions } from '../src/client.js';
import { rawRequest } from '../src/raw-exchange.js';
import { isRawResponse } from '../src/transport.js';
import { keepAliveServer, scripted, type Seen } from './scripted-server.js';

const blob = randomBytes(300 * 1024 + 7);
const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
const desc = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: blob.length };

function makeClient(t: Test, options: RegistryClientOptions = {}): RegistryClient {
  const client = new RegistryClient({ plainHttp: true, retries: 2, retryDelayMs: 5, ...options });
  t.teardown(() => client.close());
  return client;
}

const head200 = (length: number) => `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`;

/** Pulls the blob from `host` into a fresh store; resolves with the result and the store, or rejects as fetchBlobToStore does. */
async function pull(t: Test, client: RegistryClient, host: string, retries?: string[]) {
  const store = new Store(t.testdir());
  const result = await fetchBlobToStore(client, store, { registry: host, repository: 'r' }, desc, { maxStalls: 3, onRetry: (m) => retries?.push(m) });
  return { result, store };
}

async function stored(t: Test, store: Store): Promise<void> {
  t.ok(await store.hasBlob(digest, blob.length), 'the blob is in the store');
  t.ok((await store.readBlob(digest)).equals(blob), 'byte for byte');
}

t.test('openBlob answers off our own socket unless rawBlobs is false', async (t) => {
  const { host } = await scripted(t, (socket) => socket.end(head200(blob.length) + blob.toString('latin1'), 'latin1'));
  const raw = await makeClient(t).openBlob({ registry: host, repository: 'r' }, digest, 0);
  t.ok(isRawResponse(raw), 'a RawResponse');
  raw.destroy();
  const http = await makeClient(t, { rawBlobs: false }).openBlob({ registry: host, repository: 'r' }, digest, 0);
  t.notOk(isRawResponse(http), 'node:http');
  http.destroy();
});

t.test('a chunked body, in chunks of every size', async (t) => {
  const { host } = await scripted(t, (socket) => {
    let out = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
    for (let at = 0, size = 1; at < blob.length; at += size, size = (size * 7 + 3) % 70_000) {
      const piece = blob.subarray(at, at + size);
      out += `${piece.length.toString(16)}\r\n${piece.toString('latin1')}\r\n`;
    }
    socket.end(`${out}0\r\n\r\n`, 'latin1');
  });
  const { result, store } = await pull(t, makeClient(t), host);
  t.equal(result.status, 'downloaded');
  await stored(t, store);
});

t.test('a head split across reads, byte by byte', async (t) => {
  const { host } = await scripted(t, (socket) => {
    socket.setNoDelay(true);
    const head = head200(blob.length);
    let i = 0;
    const timer = setInterval(() => {
      if (i < head.length) socket.write(head[i++]);
      else {
        clearInterval(timer);
        socket.end(blob);
      }
    }, 1);
    socket.on('close', () => clearInterval(timer));
  });
  const { store } = await pull(t, makeClient(t), host);
  await stored(t, store);
});

t.test('more bytes than Content-Length: the body ends at its length', async (t) => {
  const { host } = await scripted(t, (socket) => socket.end(Buffer.concat([Buffer.from(head200(blob.length)), blob, randomBytes(5000)])));
  const { store } = await pull(t, makeClient(t), host);
  await stored(t, store);
});

t.test('a Content-Length beyond the blob: ERR_SIZE_MISMATCH, nothing stored', async (t) => {
  const { host } = await scripted(t, (socket) => socket.end(Buffer.concat([Buffer.from(head200(blob.length + 10)), blob, randomBytes(10)])));
  const store = new Store(t.testdir());
  await t.rejects(fetchBlobToStore(makeClient(t), store, { registry: host, repository: 'r' }, desc), { code: 'ERR_SIZE_MISMATCH' });
  t.notOk(await store.hasBlob(digest, blob.length));
});

t.test('a connection closed mid-head is retried', async (t) => {
  const { host, seen } = await scripted(t, (socket, _req, n) => {
    if (n === 0) {
      socket.write('HTTP/1.1 200 OK\r\nContent-Le');
      setTimeout(() => socket.destroy(), 20);
    } else socket.end(Buffer.concat([Buffer.from(head200(blob.length)), blob]));
  });
  const retries: string[] = [];
  const { store } = await pull(t, makeClient(t, { onRetry: (m) => retries.push(m) }), host);
  await stored(t, store);
  t.equal(seen.length, 2, 'asked twice');
  t.match(retries[0], /closed the connection in the middle of the response head/);
});

t.test('a connection closed mid-body resumes with Range', async (t) => {
  const half = 100_000;
  const { host, seen } = await scripted(t, (socket, req, n) => {
    if (n === 0) {
      socket.write(Buffer.concat([Buffer.from(head200(blob.length)), blob.subarray(0, half)]));
      setTimeout(() => socket.destroy(), 50);
      return;
    }
    const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    const rest = blob.subarray(from);
    socket.end(
      Buffer.concat([
        Buffer.from(`HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${from}-${blob.length - 1}/${blob.length}\r\nContent-Length: ${rest.length}\r\n\r\n`),
        rest,
      ]),
    );
  });
  const retries: string[] = [];
  const { store } = await pull(t, makeClient(t), host, retries);
  await stored(t, store);
  t.match(seen[1]?.headers.range, /^bytes=\d+-$/, 'the second request asks for the rest');
  t.ok(Number(/\d+/.exec(seen[1].headers.range)?.[0]) > 0, 'from where the first stopped');
  t.match(retries.join('\n'), /connection lost at \d+ of \d+ bytes \(ECONNRESET\); resuming/);
});

t.test('an answer that is not HTTP: ERR_REGISTRY_PROTOCOL at once, nothing stored', async (t) => {
  const { host, seen } = await scripted(t, (socket) => socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n'));
  const store = new Store(t.testdir());
  await t.rejects(fetchBlobToStore(makeClient(t), store, { registry: host, repository: 'r' }, desc), {
    code: 'ERR_REGISTRY_PROTOCOL',
    message: /bad status line/,
  });
  t.equal(seen.length, 1, 'not retried');
  t.notOk(await store.hasBlob(digest, blob.length));
});

t.test('a server that stops after the head: the idle timeout, then ERR_REGISTRY_UNAVAILABLE', async (t) => {
  const { host } = await scripted(t, (socket) => socket.write(head200(blob.length)));
  const client = makeClient(t, { timeoutMs: 200, retries: 0 });
  const store = new Store(t.testdir());
  await t.rejects(fetchBlobToStore(client, store, { registry: host, repository: 'r' }, desc, { maxStalls: 2 }), {
    code: 'ERR_REGISTRY_UNAVAILABLE',
    message: /no answer from .* in 200 ms/,
  });
  t.notOk(await store.hasBlob(digest, blob.length));
});

t.test('TLS with a custom CA', async (t) => {
  const dir = t.testdir();
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const { host } = await scripted(t, (socket) => socket.end(Buffer.concat([Buffer.from(head200(blob.length)), blob])), {
    key: readFileSync(keyFile),
    cert: readFileSync(certFile),
  });
  t.test('verified against --ca-file: downloaded over our own TLS socket', async (t) => {
    const client = makeClient(t, { plainHttp: false, caFile: certFile });
    const res = await client.openBlob({ registry: host, repository: 'r' }, digest, 0);
    t.ok(isRawResponse(res), 'a RawResponse');
    res.destroy();
    const { store } = await pull(t, client, host);
    await stored(t, store);
  });
  t.test('without the CA: ERR_REGISTRY_TLS, no fallback', async (t) => {
    const store = new Store(t.testdir());
    await t.rejects(fetchBlobToStore(makeClient(t, { plainHttp: false, sslCertFile: '/dev/null' }), store, { registry: host, repository: 'r' }, desc), {
      code: 'ERR_REGISTRY_TLS',
    });
  });
  t.test('an insecure registry is not verified', async (t) => {
    const { store } = await pull(t, makeClient(t, { plainHttp: false, insecureRegistries: [host] }), host);
    await stored(t, store);
  });
});

t.test('a Basic challenge, then a redirect to a blob host that gets no Authorization', async (t) => {
  const blobHost = await scripted(t, (socket) => socket.end(Buffer.concat([Buffer.from(head200(blob.length)), blob])));
  // localhost names the blob host differently from the registry's 127.0.0.1: another host.
  const location = `http://localhost:${blobHost.host.split(':')[1]}/storage/blob?sig=1`;
  const registry = await scripted(t, (socket, req) => {
    if (!req.headers.authorization) socket.end('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\nContent-Length: 2\r\n\r\n{}');
    else socket.end(`HTTP/1.1 307 Temporary Redirect\r\nLocation: ${location}\r\nContent-Length: 0\r\n\r\n`);
  });
  const client = makeClient(t, { credentials: async () => ({ username: 'u', password: 'p' }) });
  const { store } = await pull(t, client, registry.host);
  await stored(t, store);
  t.equal(registry.seen.at(-1)?.headers.authorization, `Basic ${Buffer.from('u:p').toString('base64')}`, 'the registry got the credentials');
  t.equal(blobHost.seen.length, 1);
  t.equal(blobHost.seen[0].head, 'GET /storage/blob?sig=1 HTTP/1.1', 'the Location, query included');
  t.notOk('authorization' in blobHost.seen[0].headers, 'the blob host got no Authorization');
});

t.test("the client's close() ends a raw exchange nobody read", async (t) => {
  let closed: Promise<unknown> = Promise.resolve();
  const { host } = await scripted(t, (socket) => {
    closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write(head200(blob.length));
  });
  const client = new RegistryClient({ plainHttp: true });
  const res = await client.openBlob({ registry: host, repository: 'r' }, digest, 0);
  t.ok(isRawResponse(res));
  client.close();
  // Without close() the connection would stay open until the idle timeout (60 s), and the process with it.
  await closed;
  t.pass('the registry saw the connection close');
});

t.test('a header value with a line break is refused before anything is sent', async (t) => {
  const { host, seen } = await scripted(t, (socket) => socket.end(head200(0)));
  const options = { timeoutMs: 1000, minRate: 0, rateWindowMs: 1000 };
  await t.rejects(rawRequest('GET', new URL(`http://${host}/v2/`), { authorization: 'Bearer x\r\nX-Injected: 1' }, options), {
    code: 'ERR_REGISTRY_PROTOCOL',
    message: /line break/,
  });
  t.equal(seen.length, 0, 'no request reached the server');
});

t.test('an abort mid-body ends the download and its connection at once', async (t) => {
  let closed: Promise<unknown> = Promise.resolve();
  const { host } = await scripted(t, (socket) => {
    closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write(Buffer.concat([Buffer.from(head200(blob.length)), blob.subarray(0, 1000)]));
  });
  const abort = new AbortController();
  const store = new Store(t.testdir());
  const download = fetchBlobToStore(makeClient(t), store, { registry: host, repository: 'r' }, desc, { signal: abort.signal });
  // Mid-body: the first bytes are in the partial file.
  while (((await stat(store.ingestPath(digest)).catch(() => undefined))?.size ?? 0) === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  abort.abort();
  await t.rejects(download, { name: 'AbortError' });
  await closed;
  t.notOk(await store.hasBlob(digest, blob.length), 'nothing stored');
});

/** The whole blob as a 200 answer, with `extra` header lines. */
const whole = (extra = '') => Buffer.concat([Buffer.from(head200(blob.length).replace(/\r\n\r\n$/, `${extra}\r\n\r\n`)), blob]);

t.test('keep-alive: blob GETs to one host share one connection', async (t) => {
  const { host, seen, connections } = await keepAliveServer(t, (socket) => socket.write(whole()));
  const client = makeClient(t);
  const retries: string[] = [];
  for (let i = 0; i < 3; i++) await stored(t, (await pull(t, client, host, retries)).store);
  t.equal(seen.length, 3, 'three requests');
  t.equal(connections(), 1, 'on one connection');
  t.notOk(
    seen.some((r) => /close/i.test(r.headers.connection ?? '')),
    'none asked to close',
  );
  t.same(retries, [], 'no retry');
});

t.test('keep-alive: no reuse after Connection: close, HTTP/1.0, bytes past the body, or a body cut off', async (t) => {
  const half = 100_000;
  const cases: [string, (socket: Socket, req: Seen) => void][] = [
    ['Connection: close', (socket) => socket.write(whole('\r\nConnection: close'))],
    ['HTTP/1.0', (socket) => socket.write(Buffer.concat([Buffer.from(head200(blob.length).replace('HTTP/1.1', 'HTTP/1.0')), blob]))],
    ['bytes past the body', (socket) => socket.write(Buffer.concat([whole(), Buffer.from('HTTP/1.1 200 OK\r\n')]))],
    // The client gives up on it (the stall), resumes with Range on a new connection, and never reads the rest.
    ['a body that stops half-way', (socket) => socket.write(Buffer.concat([Buffer.from(head200(blob.length)), blob.subarray(0, half)]))],
  ];
  for (const [name, answer] of cases) {
    // The first connection's first answer is the case; every later answer is good, with Range honoured.
    const { host, connections, seen } = await keepAliveServer(t, (socket, req, _n, connection) => {
      if (connection === 0 && seen.filter((r) => r.connection === 0).length === 1) return answer(socket, req);
      const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      if (from === 0) return socket.write(whole());
      const rest = blob.subarray(from);
      socket.write(
        Buffer.concat([
          Buffer.from(
            `HTTP/1.1 206 Partial Content\r\nContent-Range: bytes ${from}-${blob.length - 1}/${blob.length}\r\nContent-Length: ${rest.length}\r\n\r\n`,
          ),
          rest,
        ]),
      );
    });
    const client = makeClient(t, { timeoutMs: 300, retries: 0 });
    await stored(t, (await pull(t, client, host)).store);
    await stored(t, (await pull(t, client, host)).store);
    t.equal(seen.filter((r) => r.connection === 0).length, 1, `${name}: the first connection carried one request`);
    // The next GET (the resume, for the cut body) opened the second, which the later good answers kept.
    t.equal(connections(), 2, `${name}: two connections in all`);
  }
});

t.test('keep-alive: a pooled connection the server closes is not used; one closed under a request is replaced, no retry', async (t) => {
  // Closed while idle: the client notices and opens a new one.
  const idle = await keepAliveServer(t, (socket) => {
    socket.write(whole());
    setTimeout(() => socket.end(), 10);
  });
  const client = makeClient(t);
  const retries: string[] = [];
  await stored(t, (await pull(t, client, idle.host, retries)).store);
  await new Promise((resolve) => setTimeout(resolve, 100));
  await stored(t, (await pull(t, client, idle.host, retries)).store);
  t.equal(idle.connections(), 2, 'closed while idle: a new connection');
  // Closed when the next request arrives (the race a keep-alive client must survive): sent again on a fresh one.
  const raced = await keepAliveServer(t, (socket, _req, n) => (n === 1 ? socket.destroy() : socket.write(whole())));
  await stored(t, (await pull(t, client, raced.host, retries)).store);
  await stored(t, (await pull(t, client, raced.host, retries)).store);
  t.equal(raced.seen.length, 3, 'the request that met a closing connection was sent again');
  t.equal(raced.connections(), 2, 'on a new connection');
  t.same(retries, [], 'without a retry (no backoff)');
});

t.test("keep-alive: the client's close() ends its idle connections", async (t) => {
  const { host, sockets } = await keepAliveServer(t, (socket) => socket.write(whole()));
  const client = new RegistryClient({ plainHttp: true, retries: 0 });
  await stored(t, (await pull(t, client, host)).store);
  t.equal(sockets.size, 1, 'one connection kept');
  const closed = new Promise((resolve) => [...sockets][0].on('close', resolve));
  client.close();
  await closed;
  t.pass('the server saw it close');
});
