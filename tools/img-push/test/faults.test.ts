/**
 * Uploads that break, through a proxy in front of a real registry that keeps
 * the Host header (so the registry's absolute Locations lead back through
 * it): a PATCH cut mid-body (the registry holds part of the chunk) resumes
 * from the Range the registry reports; a PATCH answered 503 is resumed; a
 * registry that keeps failing ends in ERR_REGISTRY_UNAVAILABLE; an upload
 * Location on another host gets no Authorization; a registry that reports
 * another manifest digest is ERR_DIGEST_MISMATCH. Every push that succeeds is
 * checked by digest with skopeo, an independent client.
 */
import t from 'tap';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { rawManifest, startRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, type ToolResult } from '../../../test/helpers/tools.js';

type Fault = 'pass' | 'cut' | '503' | 'offhost' | 'lie';

interface Seen {
  method: string;
  url: string;
  host: string;
  authorization?: string;
}

/**
 * A forwarding proxy: `fault(req, patchNumber)` decides per request. `cut`
 * sends the registry half the PATCH body, then drops both connections;
 * `offhost` rewrites an upload Location to `offhost` (another host);
 * `lie` answers a manifest PUT with a forged Docker-Content-Digest.
 */
async function startProxy(target: string, fault: (req: IncomingMessage, patches: number) => Fault, offhost?: () => string) {
  const seen: Seen[] = [];
  let patches = 0;
  const targetUrl = new URL(target);
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host ?? '', authorization: req.headers.authorization });
    const action = fault(req, req.method === 'PATCH' ? ++patches : patches);
    if (action === '503') {
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}');
      return;
    }
    const upstream = request({ host: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      const headers = { ...up.headers };
      if (action === 'offhost' && headers.location && offhost) {
        const location = new URL(headers.location, `http://${req.headers.host}`);
        headers.location = `${offhost()}${location.pathname}${location.search}`;
      }
      if (action === 'lie' && req.method === 'PUT' && req.url?.includes('/manifests/')) headers['docker-content-digest'] = `sha256:${'b'.repeat(64)}`;
      res.writeHead(up.statusCode ?? 502, headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    if (action !== 'cut') {
      req.pipe(upstream);
      return;
    }
    const half = Math.floor(Number(req.headers['content-length'] ?? 0) / 2);
    let sent = 0;
    req.on('data', (chunk: Buffer) => {
      if (sent >= half) return;
      const part = chunk.subarray(0, half - sent);
      sent += part.length;
      upstream.write(part);
      if (sent >= half) {
        // Let the registry take the half, then break both sides mid-body.
        setTimeout(() => {
          upstream.destroy();
          req.socket.destroy();
        }, 100);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host,
    seen,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const env = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
const errorOf = (r: ToolResult) => r.logs.find((l) => l.level === 'error');

const reg = await startRegistry();
t.teardown(() => reg.stop());
const root = tempStore('conveyor-push-faults-');
t.teardown(() => removeStore(root));
importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/app:dev');
const local = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests[0];

/** Pushes app:dev through a proxy with this fault; 64 KiB chunks so the busybox layer takes many PATCHes. */
async function pushThrough(
  t: typeof import('tap').t,
  repo: string,
  fault: (req: IncomingMessage, patches: number) => Fault,
  extra: string[] = [],
  offhost?: () => string,
) {
  const proxy = await startProxy(reg.url, fault, offhost);
  t.teardown(() => proxy.stop());
  const r = await runTool(
    'img-push',
    ['--root', root, '--log-format=json', '--chunk-size', '64k', '--min-rate', '0', ...extra, '--to', `${proxy.host}/${repo}:1`, 'app:dev'],
    { env },
  );
  return { r, proxy };
}

t.test('a PATCH cut mid-body resumes from the Range the registry reports', async (t) => {
  const { r, proxy } = await pushThrough(t, 'cut/app', (req, n) => (req.method === 'PATCH' && n === 3 ? 'cut' : 'pass'));
  t.equal(r.code, 0, r.stderr);
  t.equal(r.records[0]?.digest, local.digest);
  t.ok(
    proxy.seen.some((s) => s.method === 'GET' && s.url.includes('/blobs/uploads/')),
    'asked the registry where the upload stood',
  );
  // distribution 2.8 keeps the offset in the Location's signed _state: after a
  // PATCH broken mid-body its file is longer than that offset, so it answers
  // the status GET with 404 and the upload restarts in a new session (a
  // registry that reports its Range is resumed from it: the 503 case below).
  t.match(r.logs.find((l) => /broke off/.test(l.message ?? ''))?.message, /resuming (from byte \d+|in a new upload session)/);
  t.equal((await rawManifest(reg, 'cut/app:1')).digest, local.digest);
});

t.test('a PATCH answered 503 is resumed', async (t) => {
  const { r, proxy } = await pushThrough(t, 'flaky/app', (req, n) => (req.method === 'PATCH' && (n === 2 || n === 5) ? '503' : 'pass'));
  t.equal(r.code, 0, r.stderr);
  const resumes = r.logs.filter((l) => /broke off/.test(l.message ?? '')).map((l) => l.message);
  t.match(resumes, [/HTTP 503\); resuming from byte 65536 /, /resuming from byte 196608 /], 'resumed from the Range of the status GET');
  t.equal(proxy.seen.filter((s) => s.method === 'POST').length, 2, 'one upload session per blob: none restarted');
  t.equal((await rawManifest(reg, 'flaky/app:1')).digest, local.digest);
});

t.test('a registry that keeps failing uploads: ERR_REGISTRY_UNAVAILABLE after the retries', async (t) => {
  const { r } = await pushThrough(t, 'down/app', (req) => (req.method === 'PATCH' ? '503' : 'pass'));
  t.equal(r.code, 1);
  t.equal(errorOf(r)?.code, 'ERR_REGISTRY_UNAVAILABLE');
});

t.test('a manifest digest the registry reports that is not ours: ERR_DIGEST_MISMATCH', async (t) => {
  const { r } = await pushThrough(t, 'liar/app', () => 'lie');
  t.equal(r.code, 1);
  t.equal(errorOf(r)?.code, 'ERR_DIGEST_MISMATCH');
  t.equal(r.records.length, 0, 'no image record for a push the registry misreported');
});

t.test('an upload Location on another host is followed without Authorization', async (t) => {
  const authReg = await startRegistry({ htpasswd: { alice: 's3cret' } });
  t.teardown(() => authReg.stop());
  // The other host forwards with its own credentials, as blob storage holds its own.
  const other = await startProxy(authReg.url, () => 'pass');
  t.teardown(() => other.stop());
  const otherSeen = other.seen;
  const front = await startProxy(
    authReg.url,
    (req) => (req.method === 'POST' ? 'offhost' : 'pass'),
    () => `http://${other.host}`,
  );
  t.teardown(() => front.stop());
  const dir = t.testdir({ 'config.json': JSON.stringify({ auths: { [front.host]: { auth: Buffer.from('alice:s3cret').toString('base64') } } }) });
  const r = await runTool('img-push', ['--root', root, '--log-format=json', '--to', `${front.host}/off/app:1`, 'app:dev'], {
    env: { ...env, DOCKER_CONFIG: dir },
  });
  t.ok(
    otherSeen.some((s) => s.url.includes('/blobs/uploads/')),
    'the upload went to the other host',
  );
  t.notOk(
    otherSeen.some((s) => s.authorization !== undefined),
    'no Authorization reached the other host',
  );
  // Without credentials there the registry refuses the upload: the failure is the registry's 401, reported.
  t.equal(r.code, 1);
  t.equal(errorOf(r)?.code, 'ERR_REGISTRY_UNAUTHORIZED');
});
