/**
 * A real registry for tests: Debian's docker-registry (distribution 2.8) on a
 * free loopback port, with its storage in a temp dir, optionally with TLS (a
 * self-signed openssl certificate), htpasswd basic auth, or bearer tokens
 * from the test token issuer. Each test file starts its own.
 *
 *   const reg = await startRegistry({ htpasswd: { alice: 'secret' } });
 *   await pushImage(`${busyboxLayout()}:latest`, reg, 'busybox:latest');
 *   ... reg.host ('127.0.0.1:PORT'), reg.logs() ...
 *   await reg.stop();
 *
 * Also here: startFaultProxy, a loopback HTTP proxy in front of a registry
 * that can cut, corrupt, trickle, fail or redirect chosen responses (and, with
 * `tls`, speaks HTTPS and plain HTTP on one port), and pushIndex,
 * which PUTs an image index the registry already holds the manifests of.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { Duplex } from 'node:stream';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTokenIssuer, type TokenIssuer } from './token-issuer.js';

const execFileAsync = promisify(execFile);

export interface RegistryOptions {
  /** Serve HTTPS with a self-signed certificate for 127.0.0.1 and localhost. */
  tls?: boolean;
  /** Basic auth: user → password (bcrypt htpasswd file made with `htpasswd -Bbn`). */
  htpasswd?: Record<string, string>;
  /** Bearer-token auth through the test token issuer. */
  token?: { users?: Record<string, string>; refreshTokens?: Record<string, string>; anonymousPull?: boolean; expiresIn?: number };
  /** Accept schema1 manifest pushes (distribution's compatibility.schema1.enabled). */
  schema1?: boolean;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  /** `http://127.0.0.1:PORT` or `https://...` */
  url: string;
  /** Everything the registry printed (its access log included). */
  logs(): string;
  /** How many GETs of this blob digest the registry served (from its access log). */
  blobGets(digest: string): number;
  /** The certificate to trust (TLS registries only). */
  caFile?: string;
  tokenIssuer?: TokenIssuer;
  /** `user:password` that may push, for skopeo --dest-creds. */
  creds?: string;
  dir: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function get(url: string, insecure: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, { method: 'GET', rejectUnauthorized: !insecure }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A self-signed certificate for 127.0.0.1 (valid two days) in `dir`: `<name>.crt` doubles as the CA file. */
function selfSignedCert(dir: string, name: string, altNames: string[]): { certFile: string; keyFile: string } {
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, `${name}.key`);
  const args = ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1'];
  execFileSync('openssl', [...args, '-addext', `subjectAltName=${altNames.join(',')}`], { stdio: 'ignore' });
  return { certFile, keyFile };
}

export async function startRegistry(options: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-registry-'));
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const scheme = options.tls ? 'https' : 'http';
  let caFile: string | undefined;
  let tokenIssuer: TokenIssuer | undefined;
  let creds: string | undefined;
  const lines = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  accesslog:',
    '    disabled: false',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${host}`,
    '  secret: conveyor-test-secret',
  ];
  if (options.tls) {
    const cert = selfSignedCert(dir, 'registry', ['IP:127.0.0.1', 'DNS:localhost']);
    caFile = cert.certFile;
    const keyFile = cert.keyFile;
    lines.push('  tls:', `    certificate: ${caFile}`, `    key: ${keyFile}`);
  }
  if (options.htpasswd) {
    const file = join(dir, 'htpasswd');
    const text = Object.entries(options.htpasswd)
      .map(([user, password]) => execFileSync('htpasswd', ['-Bbn', user, password], { encoding: 'utf8' }).trim())
      .join('\n');
    writeFileSync(file, text + '\n');
    lines.push('auth:', '  htpasswd:', '    realm: conveyor-test', `    path: ${file}`);
    const [user, password] = Object.entries(options.htpasswd)[0];
    creds = `${user}:${password}`;
  } else if (options.token) {
    tokenIssuer = await startTokenIssuer({
      dir,
      users: options.token.users,
      refreshTokens: options.token.refreshTokens,
      anonymousPull: options.token.anonymousPull,
      expiresIn: options.token.expiresIn,
    });
    lines.push(
      'auth:',
      '  token:',
      `    realm: ${tokenIssuer.realm}`,
      `    service: ${tokenIssuer.service}`,
      `    issuer: ${tokenIssuer.issuer}`,
      `    rootcertbundle: ${tokenIssuer.certFile}`,
    );
    const first = Object.entries(options.token.users ?? {})[0];
    if (first) creds = `${first[0]}:${first[1]}`;
  }
  if (options.schema1) lines.push('compatibility:', '  schema1:', '    enabled: true');
  const config = join(dir, 'config.yml');
  writeFileSync(config, lines.join('\n') + '\n');

  let output = '';
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let exited = false;
  child.on('exit', () => (exited = true));

  const url = `${scheme}://${host}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(`docker-registry exited at start:\n${output}`);
    try {
      await get(`${url}/v2/`, true);
      break;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`docker-registry did not answer on ${url}:\n${output}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  return {
    host,
    port,
    url,
    caFile,
    tokenIssuer,
    creds,
    dir,
    logs: () => output,
    blobGets: (digest: string) => output.split('\n').filter((l) => l.includes(`"GET /v2/`) && l.includes(`/blobs/${digest} `)).length,
    stop: async () => {
      if (!exited) {
        const done = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 5000))]);
        if (!exited) child.kill('SIGKILL');
      }
      await tokenIssuer?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Pushes `layout:tag` (an OCI layout) to the registry as `name` (repo:tag) with
 * skopeo, an independent client. format: 'v2s2' for Docker schema2, 'v2s1' for schema1;
 * all: copy an index whole (skopeo otherwise copies only this host's manifest).
 */
export async function pushImage(
  layoutAndTag: string,
  registry: Pick<TestRegistry, 'host' | 'creds'>,
  name: string,
  format?: 'oci' | 'v2s2' | 'v2s1',
  options: { all?: boolean } = {},
): Promise<void> {
  const args = ['copy', '-q', '--dest-tls-verify=false'];
  if (options.all) args.push('--all');
  if (format) args.push('--format', format);
  if (registry.creds) args.push('--dest-creds', registry.creds);
  args.push(`oci:${layoutAndTag}`, `docker://${registry.host}/${name}`);
  // Asynchronous: the token issuer may live in this very process and must keep answering.
  await execFileAsync('skopeo', args);
}

/** A manifest's digest, media type and size as the registry serves it (via skopeo inspect --raw). */
export async function rawManifest(
  registry: Pick<TestRegistry, 'host' | 'creds'>,
  name: string,
): Promise<{ digest: string; mediaType: string; size: number; body: Buffer }> {
  const args = ['inspect', '--raw', '--tls-verify=false'];
  if (registry.creds) args.push('--creds', registry.creds);
  args.push(`docker://${registry.host}/${name}`);
  const body = (await execFileAsync('skopeo', args, { encoding: 'buffer' })).stdout as Buffer;
  const json = JSON.parse(body.toString('utf8'));
  return {
    digest: `sha256:${createHash('sha256').update(body).digest('hex')}`,
    mediaType: json.mediaType ?? (Array.isArray(json.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json'),
    size: body.length,
    body,
  };
}

/**
 * PUTs an image index to `repo:tag`; the manifests it lists must already be in
 * the repository. Returns the index digest. Uses basic credentials when given.
 */
export async function pushIndex(
  registry: Pick<TestRegistry, 'url' | 'creds'>,
  repo: string,
  tag: string,
  manifests: { mediaType: string; digest: string; size: number; platform: { os: string; architecture: string; variant?: string } }[],
  mediaType = 'application/vnd.oci.image.index.v1+json',
): Promise<string> {
  const body = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType, manifests }));
  const headers: Record<string, string> = { 'content-type': mediaType, 'content-length': String(body.length) };
  if (registry.creds) headers.authorization = `Basic ${Buffer.from(registry.creds).toString('base64')}`;
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(`${registry.url}/v2/${repo}/manifests/${tag}`, { method: 'PUT', headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(body);
  });
  if (status !== 201) throw new Error(`PUT index ${repo}:${tag}: HTTP ${status}`);
  return `sha256:${createHash('sha256').update(body).digest('hex')}`;
}

/** What the fault proxy does with one request. */
export type FaultAction =
  /** Forward; `headers` replace request headers sent upstream (e.g. an authorization the client rightly withheld). */
  | { kind: 'pass'; headers?: Record<string, string> }
  /** Send the status and headers, then the body one byte every `intervalMs` (until the client goes). */
  | { kind: 'trickle'; intervalMs: number }
  /** Send the headers and this many body bytes (default half), then reset the connection. */
  | { kind: 'cut'; bytes?: number }
  /** Pass the response with its body bytes altered (same length). */
  | { kind: 'corrupt' }
  | { kind: 'status'; status: number; headers?: Record<string, string>; body?: string }
  /** Answer with a redirect to this URL. */
  | { kind: 'redirect'; location: string; status?: number };

export interface ProxiedRequest {
  /** How it reached the proxy (only a `tls` proxy sees https). */
  scheme?: 'http' | 'https';
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
}

export interface FaultProxy {
  host: string;
  /** http://HOST, or https://HOST for a `tls` proxy (which answers plain HTTP on the same port too). */
  url: string;
  /** The certificate to trust (`tls` proxies). */
  caFile?: string;
  requests: ProxiedRequest[];
  /** Decides per request; `n` counts earlier requests with the same method and URL. */
  rule: (req: ProxiedRequest, n: number) => FaultAction;
  stop(): Promise<void>;
}

export interface FaultProxyOptions {
  /**
   * Serve HTTPS (a self-signed certificate for 127.0.0.1, localhost and
   * `bind`) and plain HTTP on the same port, told apart by the first byte, so
   * https://HOST and http://HOST name the same host and port.
   */
  tls?: boolean;
  /** Address to listen on (default 127.0.0.1): another interface's address makes a non-loopback registry. */
  bind?: string;
}

/** A loopback proxy in front of `target` (an http:// registry URL). */
export async function startFaultProxy(
  target: string,
  rule: FaultProxy['rule'] = () => ({ kind: 'pass' }),
  options: FaultProxyOptions = {},
): Promise<FaultProxy> {
  const targetUrl = new URL(target);
  const seen = new Map<string, number>();
  const bind = options.bind ?? '127.0.0.1';
  const proxy: FaultProxy = { host: '', url: '', requests: [], rule, stop: async () => undefined };
  const handler = (scheme: 'http' | 'https') => (req: IncomingMessage, res: ServerResponse) => {
    const info: ProxiedRequest = { scheme, method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers };
    proxy.requests.push(info);
    const key = `${info.method} ${info.url}`;
    const n = seen.get(key) ?? 0;
    seen.set(key, n + 1);
    const action = proxy.rule(info, n);
    if (action.kind === 'status') {
      res.writeHead(action.status, { 'content-type': 'application/json', ...(action.headers ?? {}) }).end(action.body ?? '');
      return;
    }
    if (action.kind === 'redirect') {
      res.writeHead(action.status ?? 307, { location: action.location }).end();
      return;
    }
    forward(targetUrl, req, res, action);
  };
  const server: Server = createServer(handler('http'));
  if (!options.tls) {
    await new Promise<void>((resolve) => server.listen(0, bind, resolve));
    const port = (server.address() as AddressInfo).port;
    proxy.host = `${bind}:${port}`;
    proxy.url = `http://${proxy.host}`;
    proxy.stop = () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    return proxy;
  }
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-proxy-'));
  const { certFile: caFile, keyFile } = selfSignedCert(dir, 'proxy', ['IP:127.0.0.1', 'DNS:localhost', ...(bind !== '127.0.0.1' ? [`IP:${bind}`] : [])]);
  const secure = createHttpsServer({ key: readFileSync(keyFile), cert: readFileSync(caFile) }, handler('https'));
  const sockets = new Set<Socket>();
  const front = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.once('data', (first: Buffer) => {
      // Handed on as a JS stream that replays the first bytes: a net.Socket
      // given to the TLS or HTTP server is read from its native handle, which
      // would skip bytes already read here.
      const stream = new Duplex({
        read: () => socket.resume(),
        write: (chunk, encoding, done) => socket.write(chunk, encoding, done),
        final: (done) => {
          socket.end();
          done();
        },
        destroy: (error, done) => {
          socket.destroy();
          done(error);
        },
      });
      socket.on('data', (chunk: Buffer) => {
        if (!stream.push(chunk)) socket.pause();
      });
      socket.on('end', () => stream.push(null));
      socket.on('error', (error) => stream.destroy(error));
      socket.on('close', () => stream.destroy());
      stream.push(first);
      // 0x16: a TLS handshake record; anything else is plain HTTP.
      (first[0] === 0x16 ? secure : server).emit('connection', stream);
    });
  });
  await new Promise<void>((resolve) => front.listen(0, bind, resolve));
  const port = (front.address() as AddressInfo).port;
  proxy.host = `${bind}:${port}`;
  proxy.url = `https://${proxy.host}`;
  proxy.caFile = caFile;
  proxy.stop = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      secure.closeAllConnections();
      front.close(() => {
        rmSync(dir, { recursive: true, force: true });
        resolve();
      });
    });
  return proxy;
}

function forward(target: URL, req: IncomingMessage, res: ServerResponse, action: FaultAction): void {
  const headers = { ...req.headers, host: target.host, ...(action.kind === 'pass' ? (action.headers ?? {}) : {}) };
  const upstream = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (up) => {
    const outHeaders = { ...up.headers };
    // Keep the registry's own absolute Location headers pointing through the proxy.
    res.writeHead(up.statusCode ?? 502, outHeaders);
    if (action.kind === 'cut' && (up.statusCode === 200 || up.statusCode === 206)) {
      const length = Number(up.headers['content-length'] ?? 0);
      const limit = action.bytes ?? Math.floor(length / 2);
      let sent = 0;
      up.on('data', (chunk: Buffer) => {
        if (sent >= limit) return;
        const part = chunk.subarray(0, limit - sent);
        sent += part.length;
        res.write(part);
        if (sent >= limit) {
          up.destroy();
          // Let the bytes leave, then reset the connection mid-body.
          setTimeout(() => res.socket?.destroy(), 20);
        }
      });
      return;
    }
    if (action.kind === 'trickle') {
      let pending = Buffer.alloc(0);
      let ended = false;
      up.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        up.pause();
      });
      up.on('end', () => (ended = true));
      const timer = setInterval(() => {
        if (pending.length === 0) {
          if (ended) {
            clearInterval(timer);
            res.end();
          } else up.resume();
          return;
        }
        res.write(pending.subarray(0, 1));
        pending = pending.subarray(1);
      }, action.intervalMs);
      res.on('close', () => {
        clearInterval(timer);
        up.destroy();
      });
      return;
    }
    if (action.kind === 'corrupt') {
      up.on('data', (chunk: Buffer) => {
        const copy = Buffer.from(chunk);
        for (let i = 0; i < copy.length; i += 97) copy[i] ^= 0xff;
        res.write(copy);
      });
      up.on('end', () => res.end());
      return;
    }
    up.pipe(res);
  });
  upstream.on('error', () => res.destroy());
  req.pipe(upstream);
}

/**
 * A second loopback listener standing in for blob storage (S3, a CDN): GET
 * /blobs/<repo>/<digest> fetches the blob from the registry with its own
 * credentials and serves it. Records the headers it was sent, so tests can
 * check that no Authorization reached it.
 */
export async function startBlobHost(
  registry: Pick<TestRegistry, 'url' | 'creds'>,
): Promise<{ url: string; requests: ProxiedRequest[]; stop(): Promise<void> }> {
  const requests: ProxiedRequest[] = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers });
    const match = /^\/blobs\/(.+)\/(sha256:[a-f0-9]{64})$/.exec(req.url ?? '');
    if (!match) {
      res.writeHead(404).end();
      return;
    }
    const headers: Record<string, string> = {};
    if (registry.creds) headers.authorization = `Basic ${Buffer.from(registry.creds).toString('base64')}`;
    if (req.headers.range) headers.range = req.headers.range;
    const up = httpRequest(`${registry.url}/v2/${match[1]}/blobs/${match[2]}`, { headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, {
        'content-type': 'application/octet-stream',
        ...(upRes.headers['content-length'] ? { 'content-length': upRes.headers['content-length'] } : {}),
        ...(upRes.headers['content-range'] ? { 'content-range': upRes.headers['content-range'] } : {}),
      });
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    up.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
