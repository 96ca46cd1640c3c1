/**
 * Parsing for the registry auth handshake, no I/O: the `WWW-Authenticate`
 * challenge a 401 carries (`Bearer realm="…",service="…",scope="…"` from
 * Docker Hub and most registries, or `Basic realm="…"`), a token endpoint's
 * answer, and repository scopes. The flow that uses them (fetching and
 * caching tokens) is authorizer.ts. Malformed input is undefined, never a
 * throw: the caller decides what a missing challenge or token means.
 */

export interface Challenge {
  scheme: 'bearer' | 'basic' | string;
  params: Record<string, string>;
}

/**
 * Parses a WWW-Authenticate header. Quoted values may hold commas and
 * escaped quotes; only the first challenge is used.
 */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const match = /^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(.*)$/s.exec(header);
  if (!match) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?\s*/gy;
  const rest = match[2];
  re.lastIndex = 0;
  let m: RegExpExecArray | null;
  while (re.lastIndex < rest.length && (m = re.exec(rest)) !== null) {
    params[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
  }
  return { scheme: match[1].toLowerCase(), params };
}

export interface TokenResponse {
  token: string;
  /** Milliseconds since the epoch after which the token is not used again. */
  expiresAt: number;
}

/** Reads a token endpoint's JSON answer; `token` or `access_token`, expires_in defaulting to 60 s. */
export function parseTokenResponse(body: string, now = Date.now()): TokenResponse | undefined {
  let json: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
  try {
    json = JSON.parse(body);
  } catch {
    return undefined;
  }
  const token = typeof json.token === 'string' && json.token ? json.token : typeof json.access_token === 'string' ? json.access_token : undefined;
  if (!token) return undefined;
  const expiresIn = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 60;
  const issued = typeof json.issued_at === 'string' ? Date.parse(json.issued_at) : NaN;
  const base = Number.isFinite(issued) && Math.abs(issued - now) < 3600_000 ? issued : now;
  // Renew a little early so a token does not expire mid-request.
  return { token, expiresAt: base + Math.max(1, expiresIn - 5) * 1000 };
}

/** `repository:library/alpine:pull` */
export function repositoryScope(repository: string, actions = 'pull'): string {
  return `repository:${repository}:${actions}`;
}
