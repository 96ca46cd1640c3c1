/**
 * The pull's small requests on the raw path (raw-exchange.ts): a manifest
 * HEAD, a manifest GET and a token GET answered off our own socket, each
 * checked against node:http (rawBlobs: false) on the same scripted server:
 * the same result or the same error code, for a HEAD whose Content-Length is
 * the GET's, one followed by a body it should not have, a connection dropped
 * before or in the middle of the head (once: retried; always: given up), a
 * stall, a 503, a redirect, and Basic and Bearer challenges. Also:
 * keep-alive across HEADs, and no reuse of a connection that sent bytes
 * after a bodiless answer.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { RegistryClient, type RegistryClientOptions } from '../src/client.js';
import { keepAliveServer, scripted, type Seen } from './scripted-server.js';

const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: {}, layers: [] }));
const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
const MEDIA = 'application/vnd.oci.image.manifest.v1+json';
/** A HEAD's answer: the GET's headers, Content-Length included, and no body. */
const headOk = `HTTP/1.1 200 OK\r\nContent-Type: ${MEDIA}\r\nDocker-Content-Digest: ${digest}\r\nContent-Length: ${manifest.length}\r\n\r\n`;
const getOk = Buffer.concat([Buffer.from(headOk), manifest]);
const expected = { digest, mediaType: MEDIA, size: manifest.length };

function makeClient(t: Test, raw: boolean, options: RegistryClientOptions = {}): RegistryClient {
  const client = new RegistryClient({ plainHttp: true, retries: 2, retryDelayMs: 5, rawBlobs: raw, ...options });
  t.teardown(() => client.close());
  return client;
}

/** What a call came to: its result, or its error's code. */
async function outcome(call: Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await call };
  } catch (error) {
    return { code: (error as { code?: string }).code };
  }
}

type Answer = (socket: Socket, req: Seen, n: number) => void;

/**
 * Each case: a script for the server (`n` counts the requests of this run),
 * what headManifest comes to, and the client's options. Run once over the raw
 * path and once over node:http, each against its own server.
 */
const HEAD_CASES: [string, Answer, unknown, RegistryClientOptions?][] = [
  ["a HEAD's Content-Length is the GET's: no body is waited for", (socket) => socket.end(headOk), { ok: expected }],
  ['a HEAD answered with a body after all', (socket) => socket.end(getOk), { ok: expected }],
  ['dropped before the head, once: retried', (socket, _req, n) => (n === 0 ? socket.destroy() : socket.end(headOk)), { ok: expected }],
  ['dropped before the head, always', (socket) => socket.destroy(), { code: 'ERR_REGISTRY_UNAVAILABLE' }],
  [
    'dropped in the middle of the head, always',
    (socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Le');
      setTimeout(() => socket.destroy(), 20);
    },
    { code: 'ERR_REGISTRY_UNAVAILABLE' },
  ],
  ['a stall: the idle timeout, retried, then given up', () => undefined, { code: 'ERR_REGISTRY_UNAVAILABLE' }, { timeoutMs: 150, retries: 1 }],
  [
    '503 always',
    (socket) => socket.end('HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n'),
    { code: 'ERR_REGISTRY_UNAVAILABLE' },
  ],
  ['404', (socket) => socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n'), { code: 'ERR_REGISTRY_NOT_FOUND' }],
  ['405: HEAD not supported, the caller GETs', (socket) => socket.end('HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n'), { ok: undefined }],
  [
    'a redirect is followed',
    (socket, req) =>
      socket.end(req.head.startsWith('HEAD /elsewhere ') ? headOk : 'HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n'),
    { ok: expected },
  ],
  [
    'a Basic challenge answered with the credentials',
    (socket, req) =>
      socket.end(
        req.headers.authorization === `Basic ${Buffer.from('u:p').toString('base64')}`
          ? headOk
          : 'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\nContent-Length: 0\r\n\r\n',
      ),
    { ok: expected },
    { credentials: async () => ({ username: 'u', password: 'p' }) },
  ],
  [
    'a Basic challenge refused: 401 stands',
    (socket) => socket.end('HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\nContent-Length: 0\r\n\r\n'),
    { code: 'ERR_REGISTRY_UNAUTHORIZED' },
    { credentials: async () => ({ username: 'u', password: 'p' }) },
  ],
];

t.test('headManifest: the same outcome over the raw path as over node:http', async (t) => {
  for (const [name, answer, want, options] of HEAD_CASES) {
    for (const raw of [true, false]) {
      let n = 0;
      const { host, seen } = await scripted(t, (socket, req) => answer(socket, req, n++));
      const got = await outcome(makeClient(t, raw, options).headManifest({ registry: host, repository: 'r' }, 'latest'));
      t.strictSame(got, want, `${name} (${raw ? 'raw' : 'node:http'})`);
      t.ok(
        seen.every((r) => r.head.startsWith('HEAD ')),
        `${name}: only HEADs sent (${raw ? 'raw' : 'node:http'})`,
      );
    }
  }
});

t.test('a Bearer challenge: the token GET and the manifest GET, raw and node:http alike', async (t) => {
  for (const raw of [true, false]) {
    const tokens: Seen[] = [];
    const { host, seen } = await scripted(t, (socket, req) => {
      if (req.head.startsWith('GET /token?')) {
        tokens.push(req);
        const body = JSON.stringify({ token: 'tok-1', expires_in: 300 });
        socket.end(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      } else if (req.headers.authorization === 'Bearer tok-1') socket.end(req.head.startsWith('HEAD ') ? headOk : getOk);
      else
        socket.end(
          `HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="http://${host}/token",service="reg",scope="repository:r:pull"\r\nContent-Length: 0\r\n\r\n`,
        );
    });
    const client = makeClient(t, raw);
    const ref = { registry: host, repository: 'r' };
    t.strictSame(await client.headManifest(ref, 'latest'), expected, `HEAD (${raw ? 'raw' : 'node:http'})`);
    const got = await client.getManifest(ref, 'latest');
    t.ok(got.body.equals(manifest), 'the manifest GET, with the cached token');
    t.equal(got.digest, digest);
    t.equal(tokens.length, 1, 'one token fetched');
    t.match(tokens[0].head, /[?&]scope=repository%3Ar%3Apull(&|\s)/, 'for the pull scope');
    t.match(tokens[0].head, /[?&]service=reg(&|\s)/);
    t.equal(seen.filter((r) => r.headers.authorization === 'Bearer tok-1').length, 2, 'HEAD and GET with the token');
  }
});

t.test('keep-alive: HEADs and GETs share one connection; bytes after a bodiless answer end it', async (t) => {
  const clean = await keepAliveServer(t, (socket, req) => socket.write(req.head.startsWith('HEAD ') ? headOk : getOk));
  const client = makeClient(t, true);
  const ref = { registry: clean.host, repository: 'r' };
  t.strictSame(await client.headManifest(ref, 'latest'), expected);
  t.ok((await client.getManifest(ref, 'latest')).body.equals(manifest));
  t.strictSame(await client.headManifest(ref, 'latest'), expected);
  t.equal(clean.seen.length, 3);
  t.equal(clean.connections(), 1, 'one connection');

  // A HEAD answered with a body: the bytes after the head are not the next answer's.
  const lying = await keepAliveServer(t, (socket) => socket.write(getOk));
  const other = makeClient(t, true);
  const lied = { registry: lying.host, repository: 'r' };
  t.strictSame(await other.headManifest(lied, 'latest'), expected);
  t.strictSame(await other.headManifest(lied, 'latest'), expected);
  t.equal(lying.connections(), 2, 'the connection that sent a body to a HEAD is not used again');
});
