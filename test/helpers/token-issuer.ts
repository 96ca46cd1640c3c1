/**
 * A small bearer-token issuer for distribution's `auth: token:` mode, as
 * Docker Hub's auth.docker.io works: GET /token?service=S&scope=repository:NAME:pull
 * (optionally with basic auth) returns {token, access_token, expires_in, issued_at}.
 * Tokens are RS256 JWTs whose header carries `x5c` with the issuer certificate,
 * which the registry verifies against its `rootcertbundle`.
 *
 * Every request is recorded (query, authorization) so tests can check scopes
 * and that credentials went where they should.
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createSign, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface TokenIssuerOptions {
  /** Directory to write the issuer key and certificate into. */
  dir: string;
  /** Accepted user → password. */
  users?: Record<string, string>;
  /** OAuth2 refresh tokens (docker's identity tokens) → user, accepted by POST /token. */
  refreshTokens?: Record<string, string>;
  /** Hand out pull-only tokens without credentials (Docker Hub does for public images). */
  anonymousPull?: boolean;
  service?: string;
  issuer?: string;
  /** Token lifetime in seconds (default 300). */
  expiresIn?: number;
}

export interface TokenRequest {
  method: string;
  service?: string;
  scopes: string[];
  /** user name from basic auth, or undefined for an anonymous request. */
  user?: string;
  authorization?: string;
}

export interface TokenIssuer {
  realm: string;
  service: string;
  issuer: string;
  /** PEM file for the registry's rootcertbundle. */
  certFile: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

export async function startTokenIssuer(options: TokenIssuerOptions): Promise<TokenIssuer> {
  const keyFile = join(options.dir, 'issuer.key');
  const certFile = join(options.dir, 'issuer.crt');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=conveyor-test-issuer'],
    { stdio: 'ignore' },
  );
  const key = createPrivateKey(readFileSync(keyFile));
  const certDer = new X509Certificate(readFileSync(certFile)).raw;
  const service = options.service ?? 'conveyor-test-registry';
  const issuer = options.issuer ?? 'conveyor-test-issuer';
  const expiresIn = options.expiresIn ?? 300;
  const requests: TokenRequest[] = [];

  const sign = (claims: object): string => {
    const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c: [certDer.toString('base64')] }));
    const payload = b64url(JSON.stringify(claims));
    const signer = createSign('RSA-SHA256');
    signer.update(`${header}.${payload}`);
    return `${header}.${payload}.${b64url(signer.sign(key))}`;
  };

  const userOf = (req: IncomingMessage): { user?: string; ok: boolean } => {
    const auth = req.headers.authorization;
    if (!auth) return { ok: true };
    const match = /^Basic (.+)$/i.exec(auth);
    if (!match) return { ok: false };
    const [user, ...rest] = Buffer.from(match[1], 'base64').toString('utf8').split(':');
    const password = rest.join(':');
    return { user, ok: options.users?.[user] !== undefined && options.users[user] === password };
  };

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    let params = url.searchParams;
    let { user, ok } = userOf(req);
    if (req.method === 'POST') {
      // The OAuth2 refresh-token grant docker uses for identity tokens.
      let body = '';
      for await (const chunk of req) body += chunk;
      params = new URLSearchParams(body);
      const owner = params.get('grant_type') === 'refresh_token' ? options.refreshTokens?.[params.get('refresh_token') ?? ''] : undefined;
      user = owner;
      ok = owner !== undefined;
    }
    const scopes = params
      .getAll('scope')
      .flatMap((s) => s.split(' '))
      .filter(Boolean);
    requests.push({ method: req.method ?? 'GET', service: params.get('service') ?? undefined, scopes, user, authorization: req.headers.authorization });
    if (url.pathname !== '/token') {
      res.writeHead(404).end();
      return;
    }
    if (!ok || (!user && !options.anonymousPull)) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }));
      return;
    }
    const access = scopes.flatMap((scope) => {
      const [type, ...rest] = scope.split(':');
      const actions = rest.pop()?.split(',') ?? [];
      const name = rest.join(':');
      const granted = user ? actions : actions.filter((a) => a === 'pull');
      return granted.length ? [{ type, name, actions: granted }] : [];
    });
    const now = Math.floor(Date.now() / 1000);
    const token = sign({
      iss: issuer,
      sub: user ?? '',
      aud: service,
      exp: now + expiresIn,
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access,
    });
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ token, access_token: token, expires_in: expiresIn, issued_at: new Date().toISOString() }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    requests,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
