/**
 * The registry client's limits against a hostile server (issue 7): declared
 * blob sizes above the maximum and blobs the disk cannot hold are refused
 * before a request; a server that trickles its headers or body ends with
 * ERR_REGISTRY_UNAVAILABLE after the rate window, not after the idle timeout
 * (which every byte restarts); a disk that fills mid-download is ERR_STORE_IO
 * at once, never retried as a dropped connection.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { checkBlobSize, ensureFreeSpace, fetchBlobToStore, statfsFreeSpace } from '../src/blob.js';
import { RegistryClient } from '../src/client.js';
import { Store } from '@conveyor/lib-common/store';

const D = `sha256:${'a'.repeat(64)}`;

async function listen<S extends Server | NetServer>(t: { teardown(fn: () => unknown): void }, server: S): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        if ('closeAllConnections' in server) server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A server that writes `text` one byte every `intervalMs` on each connection. */
async function trickler(t: Parameters<typeof listen>[0], text: string, intervalMs: number): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    let i = 0;
    const timer = setInterval(() => {
      if (i < text.length) socket.write(text[i++]);
    }, intervalMs);
    socket.on('close', () => clearInterval(timer));
    socket.on('error', () => undefined);
  });
  t.teardown(() => {
    for (const s of sockets) s.destroy();
  });
  return listen(t, server);
}

t.test('checkBlobSize', async (t) => {
  const cases: [number, number, string | undefined][] = [
    [10, 10, undefined],
    [0, 10, undefined],
    [11, 10, 'ERR_LAYER_TOO_LARGE'],
    [2 ** 50, 16 * 1024 ** 3, 'ERR_LAYER_TOO_LARGE'],
  ];
  for (const [size, max, code] of cases) {
    const run = () => checkBlobSize({ mediaType: 'x', digest: D, size }, max, 'reg/repo');
    if (code) t.throws(run, { code, details: { size, max } }, `${size} > ${max}`);
    else t.doesNotThrow(run, `${size} <= ${max}`);
  }
});

t.test('ensureFreeSpace', async (t) => {
  const cases: [number, number | undefined, boolean][] = [
    [100, 1000, true],
    [1000, 1000, true],
    [1001, 1000, false],
    [100, undefined, true], // the file system cannot say: the write will
    [0, 0, true],
  ];
  for (const [needed, free, ok] of cases) {
    const run = ensureFreeSpace('/some/store', needed, 'blob x', async () => free);
    if (ok) await t.resolves(run, `${needed} in ${free}`);
    else
      await t.rejects(run, {
        code: 'ERR_STORE_IO',
        message: /1001 bytes needed, 1000 free under \/some\/store/,
        hint: /\/some\/store/,
        details: { path: '/some/store', needed, free },
      });
  }
  const real = await statfsFreeSpace(tmpdir());
  t.ok(typeof real === 'number' && real > 0, `statfs reads a real file system (${real} bytes free)`);
});

t.test('a server that trickles', async (t) => {
  const client = (t: { teardown(fn: () => void): void }) => {
    const c = new RegistryClient({ plainHttp: true, minRate: 1000, rateWindowMs: 300, retries: 1, retryDelayMs: 10 });
    t.teardown(() => c.close());
    return c;
  };
  t.test('its headers: ERR_REGISTRY_UNAVAILABLE after the window, retried once', async (t) => {
    const host = await trickler(t, `HTTP/1.1 200 OK\r\nX-Padding: ${'a'.repeat(10_000)}\r\n\r\n`, 20);
    const started = Date.now();
    await t.rejects(client(t).getManifest({ registry: host, repository: 'r' }, 'latest'), {
      code: 'ERR_REGISTRY_UNAVAILABLE',
      message: /too slow/,
      hint: /--min-rate/,
    });
    t.ok(Date.now() - started < 5000, 'within a few windows');
  });
  t.test('its body: ERR_REGISTRY_UNAVAILABLE, not an internal error', async (t) => {
    const body = '{"schemaVersion":2}'.padEnd(2000, ' ');
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': String(body.length) });
      let i = 0;
      const timer = setInterval(() => (i < body.length ? res.write(body[i++]) : res.end()), 50);
      res.on('close', () => clearInterval(timer));
    });
    const bodyHost = await listen(t, server);
    await t.rejects(client(t).getManifest({ registry: bodyHost, repository: 'r' }, 'latest'), { code: 'ERR_REGISTRY_UNAVAILABLE', hint: /--min-rate/ });
  });
  t.test('minRate 0 turns the check off', async (t) => {
    const body = '{"schemaVersion":2}';
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': String(body.length) });
      let i = 0;
      const timer = setInterval(() => (i < body.length ? res.write(body[i++]) : res.end()), 50);
      res.on('close', () => clearInterval(timer));
    });
    const host = await listen(t, server);
    const c = new RegistryClient({ plainHttp: true, minRate: 0, rateWindowMs: 300, retries: 0 });
    t.teardown(() => c.close());
    const got = await c.getManifest({ registry: host, repository: 'r' }, 'latest');
    t.equal(got.body.toString(), body, 'a second of trickle, read whole');
  });
  t.test('a fast answer on a kept-alive socket is not slow later', async (t) => {
    const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end('{}'));
    const host = await listen(t, server);
    const c = client(t);
    const first = await c.getManifest({ registry: host, repository: 'r' }, 'latest');
    // Idle for several windows: a timer left running would now kill the socket.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const second = await c.getManifest({ registry: host, repository: 'r' }, 'latest');
    t.equal(second.digest, first.digest);
  });
});

t.test('fetchBlobToStore', async (t) => {
  const blob = randomBytes(2 * 1024 * 1024);
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
  let gets = 0;
  const server = createServer((req, res) => {
    gets++;
    if (req.url !== `/v2/r/blobs/${digest}`) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': String(blob.length) }).end(blob);
  });
  const host = await listen(t, server);
  const ref = { registry: host, repository: 'r' };
  const desc = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size: blob.length };
  const client = new RegistryClient({ plainHttp: true, retryDelayMs: 10 });
  t.teardown(() => client.close());

  t.test('a blob over maxSize is refused before a request', async (t) => {
    gets = 0;
    await t.rejects(fetchBlobToStore(client, new Store(t.testdir()), ref, desc, { maxSize: 1024 }), { code: 'ERR_LAYER_TOO_LARGE' });
    t.equal(gets, 0);
  });
  t.test('a blob that does not fit is refused before a request', async (t) => {
    gets = 0;
    const root = t.testdir();
    await t.rejects(fetchBlobToStore(client, new Store(root), ref, desc, { freeSpace: async () => 1000 }), {
      code: 'ERR_STORE_IO',
      details: { needed: blob.length, free: 1000 },
    });
    t.equal(gets, 0);
  });
  t.test('it fits: downloaded', async (t) => {
    const result = await fetchBlobToStore(client, new Store(t.testdir()), ref, desc, { freeSpace: async () => 10 * blob.length });
    t.equal(result.status, 'downloaded');
  });
  t.test(
    'a disk that fills mid-download is ERR_STORE_IO at once, not a dropped connection to resume',
    { skip: process.getuid?.() === 0 ? false : 'mounting a tmpfs needs root' },
    async (t) => {
      const root = mkdtempSync(join(tmpdir(), 'conveyor-tmpfs-'));
      try {
        execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', root], { stdio: 'ignore' });
      } catch {
        rmSync(root, { recursive: true, force: true });
        t.skip('mount -t tmpfs failed');
        return;
      }
      t.teardown(() => {
        execFileSync('umount', [root]);
        rmSync(root, { recursive: true, force: true });
      });
      gets = 0;
      const retries: string[] = [];
      // The reading lies (another writer filled the disk after it): the write itself must tell.
      const error = await fetchBlobToStore(client, new Store(root), ref, desc, {
        freeSpace: async () => 10 * blob.length,
        onRetry: (m) => retries.push(m),
      }).catch((e) => e);
      t.type(error, ConveyorError);
      t.equal(error.code, 'ERR_STORE_IO', error.message);
      t.equal(gets, 1, 'not retried');
      t.strictSame(retries, []);
    },
  );
});
