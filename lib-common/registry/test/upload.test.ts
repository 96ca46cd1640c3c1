/**
 * upload.ts: the pure parts table-driven (rangeEnd, withDigest, pushScope),
 * and the protocol against small scripted servers standing in for a registry
 * that answers what a real one would not: Locations relative and absolute
 * with query strings followed exactly, a mount answered 201, the registry's
 * OCI-Chunk-Min-Length raising the chunk size, and the refusals: an upload
 * answer without Location, a Range beyond what was sent, a HEAD size that is
 * not the blob's, a closing PUT or a manifest PUT that reports another
 * digest. (The real registry is in tools/img-push/test.)
 */
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { RegistryClient } from '../src/client.js';
import { blobExists, pushBlob, pushScope, putManifest, rangeEnd, withDigest, type BlobSource } from '../src/upload.js';

t.test('rangeEnd', async (t) => {
  const cases: [string | undefined, number | undefined][] = [
    ['0-0', 0],
    ['0-65535', 65535],
    ['bytes=0-99', 99],
    [' 0-7 ', 7],
    ['1-5', undefined],
    ['0-', undefined],
    ['0--1', undefined],
    ['garbage', undefined],
    [undefined, undefined],
    ['0-99999999999999999999', undefined],
  ];
  for (const [header, expected] of cases) t.equal(rangeEnd(header), expected, String(header));
});

t.test('withDigest keeps the Location query (_state) and adds digest', async (t) => {
  const d = `sha256:${'a'.repeat(64)}`;
  const cases: [string, string][] = [
    ['http://r/v2/a/blobs/uploads/u1?_state=xy%3D', `http://r/v2/a/blobs/uploads/u1?_state=xy%3D&digest=sha256%3A${'a'.repeat(64)}`],
    ['http://r/u?_state=a+b~c%7E', `http://r/u?_state=a+b~c%7E&digest=sha256%3A${'a'.repeat(64)}`],
    ['https://r:5000/upload/u2', `https://r:5000/upload/u2?digest=sha256%3A${'a'.repeat(64)}`],
    ['http://r/u?digest=old&x=1', `http://r/u?digest=sha256%3A${'a'.repeat(64)}&x=1`],
  ];
  for (const [location, expected] of cases) t.equal(withDigest(new URL(location), d).href, expected, location);
});

t.test('pushScope', async (t) => {
  t.equal(pushScope('team/app'), 'repository:team/app:pull,push');
  t.equal(pushScope('team/app', 'other/app'), 'repository:team/app:pull,push repository:other/app:pull');
});

type Script = (req: IncomingMessage, res: ServerResponse, body: Buffer, base: string) => void;

/** A registry stand-in: `script` answers each request (the body read first); every request is recorded. */
async function scripted(t: { teardown(fn: () => unknown): void }, script: Script) {
  const seen: { method: string; url: string; body: Buffer; headers: IncomingMessage['headers'] }[] = [];
  let base = '';
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    seen.push({ method: req.method ?? '', url: req.url ?? '', body, headers: req.headers });
    script(req, res, body, base);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  base = `http://${host}`;
  return { host, seen };
}

const blob = randomBytes(10_000);
const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
const source: BlobSource = {
  descriptor: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: blob.length },
  open: (start, end) => Readable.from([blob.subarray(start, end)]),
};
const client = () => new RegistryClient({ plainHttp: true, retries: 1, retryDelayMs: 1 });

/** A well-behaved upload: relative Locations with a _state query, Range after each PATCH, 201 on the closing PUT. */
function honest(options: { minChunk?: number; absolute?: boolean; failFirstPatch?: boolean } = {}): Script {
  let received = Buffer.alloc(0);
  let n = 0;
  return (req, res, body, base) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const location = (path: string) => (options.absolute ? `${base}${path}` : path);
    if (req.method === 'HEAD') return void res.writeHead(404).end();
    if (req.method === 'POST') {
      const headers: Record<string, string> = { location: location(`/upload/s1?_state=${n++}`) };
      if (options.minChunk) headers['oci-chunk-min-length'] = String(options.minChunk);
      return void res.writeHead(202, headers).end();
    }
    if (req.method === 'GET') {
      // distribution's status answer: Range 0-(offset-1), 0-0 when empty.
      return void res.writeHead(204, { location: location(`/upload/s1?_state=${n++}`), range: `0-${Math.max(0, received.length - 1)}` }).end();
    }
    if (req.method === 'PATCH') {
      if (options.failFirstPatch) {
        options.failFirstPatch = false;
        return void res.writeHead(503).end();
      }
      if (req.headers['content-range'] !== `${received.length}-${received.length + body.length - 1}`) return void res.writeHead(416).end();
      received = Buffer.concat([received, body]);
      return void res.writeHead(202, { location: location(`/upload/s1?_state=${n++}`), range: `0-${received.length - 1}` }).end();
    }
    if (req.method === 'PUT') {
      received = Buffer.concat([received, body]);
      const ok = url.searchParams.get('digest') === digest && createHash('sha256').update(received).digest('hex') === digest.slice(7);
      return void res.writeHead(ok ? 201 : 400, ok ? { 'docker-content-digest': digest } : {}).end();
    }
    res.writeHead(405).end();
  };
}

t.test('monolithic: POST, then one PUT to the Location exactly, with its query and the digest', async (t) => {
  const reg = await scripted(t, honest());
  const c = client();
  t.teardown(() => c.close());
  t.equal(await pushBlob(c, { registry: reg.host, repository: 'a/b' }, source), 'uploaded');
  const put = reg.seen.find((s) => s.method === 'PUT')!;
  t.equal(put.url, `/upload/s1?_state=0&digest=${encodeURIComponent(digest)}`);
  t.equal(put.body.length, blob.length);
  t.equal(put.headers['content-type'], 'application/octet-stream');
});

t.test('chunked with absolute Locations; the registry minimum chunk size wins over a smaller --chunk-size', async (t) => {
  const reg = await scripted(t, honest({ absolute: true, minChunk: 4000 }));
  const c = client();
  t.teardown(() => c.close());
  t.equal(await pushBlob(c, { registry: reg.host, repository: 'a/b' }, source, { chunkSize: 1000 }), 'uploaded');
  const patches = reg.seen.filter((s) => s.method === 'PATCH');
  t.same(
    patches.map((p) => p.headers['content-range']),
    ['0-3999', '4000-7999', '8000-9999'],
  );
  t.same(
    patches.map((p) => p.url),
    ['/upload/s1?_state=0', '/upload/s1?_state=1', '/upload/s1?_state=2'],
    'each PATCH went to the previous answer Location',
  );
  t.equal(reg.seen.at(-1)!.url, `/upload/s1?_state=3&digest=${encodeURIComponent(digest)}`);
});

t.test('a first PATCH refused (503): the status GET says 0-0, the upload resumes from byte 0', async (t) => {
  const reg = await scripted(t, honest({ failFirstPatch: true }));
  const c = client();
  t.teardown(() => c.close());
  const retried: string[] = [];
  t.equal(await pushBlob(c, { registry: reg.host, repository: 'a/b' }, source, { chunkSize: 4000, onRetry: (m) => retried.push(m) }), 'uploaded');
  t.match(retried, [/HTTP 503\); resuming from byte 0 /]);
  t.same(
    reg.seen.filter((s) => s.method === 'PATCH').map((p) => p.headers['content-range']),
    ['0-3999', '0-3999', '4000-7999', '8000-9999'],
  );
});

t.test('a mount answered 201 uploads nothing; a blob the registry has is skipped', async (t) => {
  const reg = await scripted(t, (req, res) => {
    if (req.method === 'HEAD') return void res.writeHead(404).end();
    if (req.method === 'POST' && req.url?.includes('mount=')) return void res.writeHead(201, { location: `/v2/a/b/blobs/${digest}` }).end();
    res.writeHead(500).end();
  });
  const c = client();
  t.teardown(() => c.close());
  t.equal(await pushBlob(c, { registry: reg.host, repository: 'a/b' }, source, { mountFrom: ['a/b', 'x/y'] }), 'mounted');
  t.match(reg.seen.at(-1)!.url, /^\/v2\/a\/b\/blobs\/uploads\/\?mount=sha256%3A[0-9a-f]{64}&from=x%2Fy$/, 'never mounts from itself');

  const has = await scripted(t, (_req, res) => res.writeHead(200, { 'content-length': String(blob.length) }).end());
  t.equal(await pushBlob(c, { registry: has.host, repository: 'a/b' }, source), 'exists');
  t.equal(has.seen.length, 1, 'one HEAD, nothing else');
});

t.test('refusals from a registry that breaks the protocol', async (t) => {
  const cases: { name: string; script: Script; code: string; run?: 'chunked' | 'monolithic' | 'head' | 'manifest' }[] = [
    {
      name: 'an upload answer without Location',
      script: (req, res) => (req.method === 'HEAD' ? res.writeHead(404).end() : res.writeHead(202).end()),
      code: 'ERR_REGISTRY_PROTOCOL',
    },
    {
      name: 'a Location that is not http(s)',
      script: (req, res) => (req.method === 'HEAD' ? res.writeHead(404).end() : res.writeHead(202, { location: 'file:///etc/passwd' }).end()),
      code: 'ERR_REGISTRY_PROTOCOL',
    },
    {
      name: 'a Range beyond what was sent',
      script: (req, res) => {
        if (req.method === 'HEAD') return void res.writeHead(404).end();
        if (req.method === 'POST') return void res.writeHead(202, { location: '/u' }).end();
        res.writeHead(202, { location: '/u', range: '0-999999' }).end();
      },
      code: 'ERR_REGISTRY_PROTOCOL',
    },
    {
      name: 'a registry that keeps none of a chunk',
      script: (req, res) => {
        if (req.method === 'HEAD') return void res.writeHead(404).end();
        if (req.method === 'POST') return void res.writeHead(202, { location: '/u' }).end();
        res.writeHead(202, { location: '/u', range: '0-0' }).end();
      },
      code: 'ERR_REGISTRY_PROTOCOL',
    },
    {
      name: 'a closing PUT that reports another digest',
      script: (req, res) => {
        if (req.method === 'HEAD') return void res.writeHead(404).end();
        if (req.method === 'POST') return void res.writeHead(202, { location: '/u' }).end();
        res.writeHead(201, { 'docker-content-digest': `sha256:${'f'.repeat(64)}` }).end();
      },
      code: 'ERR_DIGEST_MISMATCH',
      run: 'monolithic',
    },
    {
      name: 'a 403 on the upload',
      script: (req, res) => (req.method === 'HEAD' ? res.writeHead(404).end() : res.writeHead(403).end('{"errors":[{"code":"DENIED","message":"no"}]}')),
      code: 'ERR_REGISTRY_DENIED',
    },
    {
      name: 'a HEAD whose size is not the blob size',
      script: (_req, res) => res.writeHead(200, { 'content-length': '5' }).end(),
      code: 'ERR_SIZE_MISMATCH',
      run: 'head',
    },
    {
      name: 'a manifest PUT that reports another digest',
      script: (_req, res) => res.writeHead(201, { 'docker-content-digest': `sha256:${'f'.repeat(64)}` }).end(),
      code: 'ERR_DIGEST_MISMATCH',
      run: 'manifest',
    },
  ];
  for (const c of cases) {
    const reg = await scripted(t, c.script);
    const cl = client();
    const repo = { registry: reg.host, repository: 'a/b' };
    const attempt =
      c.run === 'head'
        ? blobExists(cl, repo, source.descriptor)
        : c.run === 'manifest'
          ? putManifest(cl, repo, 'v1', { mediaType: 'application/vnd.oci.image.manifest.v1+json', body: Buffer.from('{}') })
          : pushBlob(cl, repo, source, { chunkSize: c.run === 'monolithic' ? undefined : 1000 });
    await t.rejects(attempt, { code: c.code }, c.name);
    cl.close();
  }
});

t.test('putManifest: Content-Type is the manifest media type; a digest reference must be the body digest', async (t) => {
  const body = Buffer.from('{"schemaVersion":2}');
  const d = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  const reg = await scripted(t, (_req, res) => res.writeHead(201, { 'docker-content-digest': d }).end());
  const c = client();
  t.teardown(() => c.close());
  const repo = { registry: reg.host, repository: 'a/b' };
  t.equal(await putManifest(c, repo, 'v1', { mediaType: 'application/vnd.docker.distribution.manifest.v2+json', body }), d);
  // The scheme is learnt with a bodiless GET /v2/ before the first request with a body.
  t.same(
    reg.seen.map((s) => `${s.method} ${s.url}`),
    ['GET /v2/', 'PUT /v2/a/b/manifests/v1'],
  );
  t.equal(reg.seen[1].headers['content-type'], 'application/vnd.docker.distribution.manifest.v2+json');
  t.same(reg.seen[1].body, body);
  await t.rejects(putManifest(c, repo, `sha256:${'0'.repeat(64)}`, { mediaType: 'x', body }), { code: 'ERR_DIGEST_MISMATCH' });
  t.equal(reg.seen.length, 2, 'a mismatched digest reference sends nothing');
});
