/**
 * The auth flow, per registry: anonymous until a 401 names a challenge
 * (auth.ts parses it), then Basic with the user's credentials, or Bearer
 * with a token fetched from the challenge's realm (basic auth there when we
 * have credentials, an OAuth2 refresh-token POST for identity tokens,
 * anonymous otherwise) and cached per repository scope for its lifetime.
 * Credentials are looked up lazily, once per registry, only when a registry
 * asks for them; they go to a token realm over HTTPS only, unless plain HTTP
 * is already accepted for that registry (schemer.ts's acceptsPlainHttp).
 *
 * On failure: a token server that refuses (401/403) is
 * ERR_REGISTRY_UNAUTHORIZED, saying whether credentials were sent, withheld
 * or absent; 429 is ERR_REGISTRY_RATE_LIMITED; other statuses, an unusable
 * realm or an answer without a token are ERR_REGISTRY_PROTOCOL (5xx:
 * ERR_REGISTRY_UNAVAILABLE); network failures are mapped by error-map.ts
 * after retry.ts's retries; a credential lookup's own error passes through
 * (ERR_AUTH_HELPER) and, being cached per registry, stands for the client's
 * lifetime. A token is cached only from a 200 with a token in it.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { parseChallenge, parseTokenResponse, type Challenge, type TokenResponse } from './auth.js';
import type { RepositoryRef } from './client.js';
import type { Credentials } from './credentials.js';
import { networkError } from './error-map.js';
import { retryRequest, type RetryPolicy } from './retry.js';
import { firstHeader, readBody, type HttpResponse, type Transport } from './transport.js';

export interface AuthorizerOptions {
  /** Finds credentials for a registry when it asks for them. */
  credentials?: (registry: string) => Promise<Credentials | undefined>;
  /** Whether plain HTTP is accepted for a registry (then its http:// token realm gets credentials too). */
  acceptsPlainHttp: (registry: string) => boolean;
  /** Token GETs on the transport's raw path (sendRaw: no node:http); the refresh-token POST always goes through send. */
  rawTokenGets?: boolean;
  retry: RetryPolicy;
}

interface AuthState {
  challenge?: Challenge;
  tokens: Map<string, TokenResponse>;
  credentials?: Promise<Credentials | undefined>;
}

export class Authorizer {
  private readonly auth = new Map<string, AuthState>();

  constructor(
    private readonly transport: Transport,
    private readonly options: AuthorizerOptions,
  ) {}

  /** The Authorization header to send up front, once a registry's challenge is known; undefined: anonymous. */
  async authorization(ref: RepositoryRef, scope: string, signal?: AbortSignal): Promise<string | undefined> {
    const state = this.state(ref.registry);
    if (!state.challenge) return undefined;
    if (state.challenge.scheme === 'basic') {
      const creds = await this.credentials(ref.registry);
      return creds?.username !== undefined ? basic(creds.username, creds.password ?? '') : undefined;
    }
    if (state.challenge.scheme === 'bearer') {
      const cached = state.tokens.get(scope);
      if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
      const token = await this.fetchToken(ref, state.challenge, scope, signal);
      return `Bearer ${token}`;
    }
    return undefined;
  }

  /**
   * Answers a registry's 401: takes its Basic or Bearer challenge (dropping
   * the token cached for `scope`) and returns the Authorization header to try
   * again with, or undefined when there is nothing new to try (no usable
   * challenge, or the same header was just refused): the 401 then stands.
   */
  async answer(ref: RepositoryRef, scope: string, res: HttpResponse, sent: string | undefined, signal?: AbortSignal): Promise<string | undefined> {
    const challenge = parseChallenge(firstHeader(res.headers['www-authenticate']));
    if (!challenge || (challenge.scheme !== 'bearer' && challenge.scheme !== 'basic')) return undefined;
    const state = this.state(ref.registry);
    state.challenge = challenge;
    state.tokens.delete(scope);
    const next = await this.authorization(ref, scope, signal);
    return next && next !== sent ? next : undefined;
  }

  private state(registry: string): AuthState {
    let state = this.auth.get(registry);
    if (!state) {
      state = { tokens: new Map() };
      this.auth.set(registry, state);
    }
    return state;
  }

  private credentials(registry: string): Promise<Credentials | undefined> {
    const state = this.state(registry);
    state.credentials ??= this.options.credentials ? this.options.credentials(registry) : Promise.resolve(undefined);
    return state.credentials;
  }

  private async fetchToken(ref: RepositoryRef, challenge: Challenge, scope: string, signal?: AbortSignal): Promise<string> {
    const state = this.state(ref.registry);
    const realm = challenge.params.realm;
    let url: URL;
    try {
      url = new URL(realm);
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('not http(s)');
    } catch {
      throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `${ref.registry} sent a bearer challenge with an unusable realm ${JSON.stringify(realm)}`);
    }
    const known = await this.credentials(ref.registry);
    const withheld = known !== undefined && !this.mayCredentialRealm(ref.registry, url);
    // Withheld credentials mean an anonymous token request: public images still pull.
    const creds = withheld ? undefined : known;
    const headers: Record<string, string> = {};
    let body: string | undefined;
    let method: 'GET' | 'POST' = 'GET';
    if (creds?.identityToken) {
      // OAuth2 refresh-token grant, as docker does with identity tokens.
      method = 'POST';
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'conveyor' });
      // One space-separated value in a form, as RFC 6749 defines scope.
      if (scope !== '') form.set('scope', scope);
      if (challenge.params.service) form.set('service', challenge.params.service);
      body = form.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
      // Several scopes (a push that mounts from another repository) as repeated
      // parameters, as docker sends them: not every token server splits on spaces.
      for (const one of scope.split(' ')) if (one !== '') url.searchParams.append('scope', one);
      if (creds?.username !== undefined) headers.authorization = basic(creds.username, creds.password ?? '');
    }
    // Retried silently: the request that needs the token reports its own retries.
    const send = (): Promise<HttpResponse> =>
      method === 'GET' && this.options.rawTokenGets ? this.transport.sendRaw(url, headers, signal) : this.transport.send(url, method, headers, signal, body);
    const res = await retryRequest(send, this.options.retry, {
      signal,
      fail: (error) => networkError(error, url.host),
    });
    const status = res.statusCode ?? 0;
    const text = (await readBody(res, 1024 * 1024, 'token response')).toString('utf8');
    if (status === 401 || status === 403) {
      if (withheld) {
        throw new ConveyorError(
          'ERR_REGISTRY_UNAUTHORIZED',
          `the token server ${url.origin}${url.pathname} refused anonymous access for ${scope} (HTTP ${status}); the credentials for ${ref.registry} were not sent because ${ref.registry} names a token realm on plain HTTP`,
          {
            hint: `credentials go over plain HTTP only to an insecure registry: if ${ref.registry} and its network are trusted, use --insecure-registry ${ref.registry}`,
            details: { realm: `${url.origin}${url.pathname}` },
          },
        );
      }
      throw new ConveyorError(
        'ERR_REGISTRY_UNAUTHORIZED',
        `the token server ${url.origin}${url.pathname} refused ${creds ? `the credentials from ${creds.source}` : 'anonymous access'} for ${scope} (HTTP ${status})`,
        {
          hint: creds
            ? `check the credentials for ${ref.registry} in ${creds.source}`
            : `log in to ${ref.registry} (docker login writes ~/.docker/config.json, which img-fetch reads)`,
        },
      );
    }
    if (status === 429) throw new ConveyorError('ERR_REGISTRY_RATE_LIMITED', `the token server ${url.host} rate-limits requests (HTTP 429)`);
    if (status !== 200)
      throw new ConveyorError(status >= 500 ? 'ERR_REGISTRY_UNAVAILABLE' : 'ERR_REGISTRY_PROTOCOL', `the token server ${url.host} answered HTTP ${status}`);
    const token = parseTokenResponse(text);
    if (!token) throw new ConveyorError('ERR_REGISTRY_PROTOCOL', `the token server ${url.host} sent no token`);
    state.tokens.set(scope, token);
    return token.token;
  }

  /**
   * Whether credentials (basic auth, an identity token) may go to this token
   * realm. The registry names the realm, so any host is accepted, as in
   * Docker's token auth; the scheme decides. HTTPS: yes. Plain HTTP: only for
   * a registry where plain HTTP is already the user's accepted risk. An HTTPS
   * registry elsewhere that names an http:// realm would have the password
   * cross the network in clear, readable and replayable by anyone on the
   * path: it gets an anonymous token request instead.
   */
  private mayCredentialRealm(registry: string, realm: URL): boolean {
    return realm.protocol === 'https:' || this.options.acceptsPlainHttp(registry);
  }
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}
