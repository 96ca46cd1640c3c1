/**
 * Registry credentials the way the docker CLI keeps them: `config.json` in
 * $DOCKER_CONFIG (default ~/.docker) with `auths` (base64 `user:pass` in
 * `auth`, or `username`/`password`, or an `identitytoken`), and credential
 * helpers: `credHelpers[host]` first, then `credsStore`, each run as
 * `docker-credential-<name> get` with the server URL on stdin.
 *
 * Library code: the environment (HOME, DOCKER_CONFIG, PATH) is passed in;
 * without HOME there, os.homedir() names the config's home.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { DEFAULT_REGISTRY } from '@conveyor/lib-common/reference';

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker login against Docker Hub with SSO, or helpers answering `<token>`). */
  identityToken?: string;
  /** Where they came from, for messages: `config.json`, `docker-credential-pass`. */
  source: string;
}

export interface CredentialOptions {
  /** The environment to read DOCKER_CONFIG, HOME and PATH from. */
  env?: NodeJS.ProcessEnv;
  /** Overrides the config directory (DOCKER_CONFIG). */
  configDir?: string;
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** docker.io's key in config.json and the server URL its helpers expect. */
export const DOCKER_HUB_CONFIG_KEY = 'https://index.docker.io/v1/';

/** The key a registry is stored under: docker.io's legacy URL, otherwise the host[:port]. */
export function configKey(registry: string): string {
  return registry === DEFAULT_REGISTRY ? DOCKER_HUB_CONFIG_KEY : registry;
}

/** `https://host:5000/v2/` → `host:5000`, as docker's ConvertToHostname does. */
export function keyHostname(key: string): string {
  let host = key.replace(/^https?:\/\//, '');
  host = host.split('/')[0];
  if (host === 'index.docker.io' || host === 'registry-1.docker.io') return DEFAULT_REGISTRY;
  return host;
}

/**
 * Finds credentials for `registry` (as in a reference: `docker.io`,
 * `127.0.0.1:5000`). Returns undefined for anonymous access. A helper that
 * fails (other than "not found") is ERR_AUTH_HELPER.
 */
export async function lookupCredentials(registry: string, options: CredentialOptions = {}): Promise<Credentials | undefined> {
  const env = options.env ?? {};
  const dir = options.configDir ?? env.DOCKER_CONFIG ?? join(env.HOME || homedir(), '.docker');
  const file = join(dir, 'config.json');
  let config: DockerConfig;
  try {
    config = JSON.parse(await readFile(file, 'utf8')) as DockerConfig;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConveyorError('ERR_AUTH_HELPER', `cannot read ${file}: ${(error as Error).message}`, { hint: 'fix or remove the file' });
  }
  if (!config || typeof config !== 'object') return undefined;
  const helper = findByHost(config.credHelpers, registry) ?? config.credsStore;
  if (typeof helper === 'string' && helper !== '') {
    const fromHelper = await runHelper(helper, configKey(registry), env);
    if (fromHelper) return fromHelper;
    if (findByHost(config.credHelpers, registry)) return undefined;
  }
  const entry = findByHost(config.auths, registry);
  if (!entry || typeof entry !== 'object') return undefined;
  const creds: Credentials = { source: file };
  if (typeof entry.auth === 'string' && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new ConveyorError('ERR_AUTH_HELPER', `${file}: auths["${configKey(registry)}"].auth is not base64 user:password`);
    creds.username = decoded.slice(0, colon);
    creds.password = decoded.slice(colon + 1);
  } else {
    if (typeof entry.username === 'string') creds.username = entry.username;
    if (typeof entry.password === 'string') creds.password = entry.password;
  }
  if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') creds.identityToken = entry.identitytoken;
  if (creds.username === undefined && creds.identityToken === undefined) return undefined;
  return creds;
}

function findByHost<T>(map: Record<string, T> | undefined, registry: string): T | undefined {
  if (!map || typeof map !== 'object') return undefined;
  const exact = map[configKey(registry)];
  if (exact !== undefined) return exact;
  for (const [key, value] of Object.entries(map)) {
    if (keyHostname(key) === registry) return value;
  }
  return undefined;
}

/** Runs `docker-credential-<name> get`; undefined when the helper has no entry for the server. */
async function runHelper(name: string, serverURL: string, env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new ConveyorError('ERR_AUTH_HELPER', `invalid credential helper name ${JSON.stringify(name)}`);
  const program = `docker-credential-${name}`;
  const { runProcess } = await import('@conveyor/lib-common/subprocess');
  const result = await runProcess(program, ['get'], { env, input: serverURL, maxBuffer: 1024 * 1024 });
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_AUTH_HELPER', `cannot run ${program}: ${result.originalMessage ?? result.shortMessage}`, {
      hint: `install ${program} or remove it from config.json`,
    });
  }
  const text = (result.stdout + result.stderr).trim();
  if (result.failed) {
    if (/credentials not found/i.test(text)) return undefined;
    throw new ConveyorError('ERR_AUTH_HELPER', `${program} get failed (${result.signal ?? `exit ${result.exitCode}`}): ${text.slice(0, 200)}`);
  }
  let parsed: { Username?: unknown; Secret?: unknown };
  try {
    parsed = JSON.parse(result.stdout);
  } catch {
    throw new ConveyorError('ERR_AUTH_HELPER', `${program} get printed something that is not JSON`);
  }
  if (typeof parsed.Secret !== 'string' || parsed.Secret === '') return undefined;
  const username = typeof parsed.Username === 'string' ? parsed.Username : '';
  if (username === '<token>') return { identityToken: parsed.Secret, source: program };
  return { username, password: parsed.Secret, source: program };
}
