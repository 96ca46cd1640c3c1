/**
 * Registry credentials the way the docker CLI keeps them: `config.json` in
 * $DOCKER_CONFIG (default ~/.docker) with `auths` (base64 `user:pass` in
 * `auth`, or `username`/`password`, or an `identitytoken`), and credential
 * helpers: `credHelpers[host]` first, then `credsStore`, each run as
 * `docker-credential-<name> get` with the server URL on stdin.
 *
 * Stored and erased as `docker login` and `docker logout` do: with a helper
 * for the registry, `docker-credential-<name> store` ({ServerURL, Username,
 * Secret} on stdin) or `erase` (the server URL on stdin), and an entry
 * without secrets (`{}`) kept in `auths` so the login shows; without one,
 * `auths[key].auth`. config.json is rewritten atomically (a temp file
 * renamed over it, through a symlink to its target), mode 0600, every other
 * key kept as it was; its directory is created 0700.
 *
 * On failure: an unreadable or malformed config.json, a helper that cannot
 * run or fails, or a write that fails is ERR_AUTH_HELPER naming the file or
 * helper; config.json is then left as it was.
 *
 * Library code: the environment (HOME, DOCKER_CONFIG, PATH) is passed in;
 * without HOME there, os.homedir() names the config's home.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, realpath, rename, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { syncDir } from '@conveyor/lib-common/durable';
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
  const file = configFile(options);
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

/** `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json` (HOME from the env passed in). */
export function configFile(options: CredentialOptions = {}): string {
  const env = options.env ?? {};
  return join(options.configDir ?? env.DOCKER_CONFIG ?? join(env.HOME || homedir(), '.docker'), 'config.json');
}

/** The helper that keeps `registry`'s credentials: `credHelpers[host]`, else `credsStore`, else none. */
function helperFor(config: Record<string, unknown>, registry: string): string | undefined {
  const byHost = findByHost(config.credHelpers as Record<string, string> | undefined, registry);
  const helper = typeof byHost === 'string' && byHost !== '' ? byHost : config.credsStore;
  return typeof helper === 'string' && helper !== '' ? helper : undefined;
}

/** config.json as an object with every key kept; {} when it does not exist. */
async function readConfigObject(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConveyorError('ERR_AUTH_HELPER', `cannot read ${file}: ${(error as Error).message}`);
  }
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConveyorError('ERR_AUTH_HELPER', `${file} is not valid JSON: ${(error as Error).message}`, { hint: 'fix the file; it was left as it is' });
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConveyorError('ERR_AUTH_HELPER', `${file} is not a JSON object`, { hint: 'fix the file; it was left as it is' });
  }
  return value as Record<string, unknown>;
}

/** Writes config.json atomically, mode 0600, through a symlink to its target as docker does. */
async function writeConfigObject(file: string, config: Record<string, unknown>): Promise<void> {
  try {
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    let target = file;
    try {
      target = await realpath(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const temp = join(dirname(target), `.config.json.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await open(temp, 'wx', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify(config, null, '\t')}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      // open's mode is masked by the umask; the file holds secrets.
      await chmod(temp, 0o600);
      await rename(temp, target);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
    // The rename made durable too (lib-common durable.ts): a crash after `img-login` said so keeps the login.
    await syncDir(dirname(target));
  } catch (error) {
    throw new ConveyorError('ERR_AUTH_HELPER', `cannot write ${file}: ${(error as Error).message}`, { cause: error });
  }
}

/** The `auths` keys that name `registry` (its own key, and URLs or aliases of its host). */
function authKeys(auths: unknown, registry: string): string[] {
  if (!auths || typeof auths !== 'object' || Array.isArray(auths)) return [];
  return Object.keys(auths).filter((key) => key === configKey(registry) || keyHostname(key) === registry);
}

/** Runs `docker-credential-<name> <action>` with `input` on stdin; the failure text when it fails. */
async function runHelperAction(name: string, action: 'store' | 'erase', input: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new ConveyorError('ERR_AUTH_HELPER', `invalid credential helper name ${JSON.stringify(name)}`);
  const program = `docker-credential-${name}`;
  const { runProcess } = await import('@conveyor/lib-common/subprocess');
  const result = await runProcess(program, [action], { env, input, maxBuffer: 1024 * 1024 });
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_AUTH_HELPER', `cannot run ${program}: ${result.originalMessage ?? result.shortMessage}`, {
      hint: `install ${program} or remove it from config.json`,
    });
  }
  if (!result.failed) return undefined;
  return `${program} ${action} failed (${result.signal ?? `exit ${result.exitCode}`}): ${(result.stdout + result.stderr).trim().slice(0, 200)}`;
}

/**
 * Stores `username`/`password` for `registry` as docker login does; returns
 * where they went (the helper program or config.json's path).
 */
export async function storeCredentials(
  registry: string,
  credentials: { username: string; password: string },
  options: CredentialOptions = {},
): Promise<string> {
  const env = options.env ?? {};
  const file = configFile(options);
  const config = await readConfigObject(file);
  const key = configKey(registry);
  const auths = config.auths && typeof config.auths === 'object' && !Array.isArray(config.auths) ? (config.auths as Record<string, unknown>) : {};
  // Old spellings of this registry's key go: the one written now is the one read first.
  for (const old of authKeys(auths, registry)) if (old !== key) delete auths[old];
  const helper = helperFor(config, registry);
  let where = file;
  if (helper) {
    const input = JSON.stringify({ ServerURL: key, Username: credentials.username, Secret: credentials.password });
    const failure = await runHelperAction(helper, 'store', input, env);
    if (failure) throw new ConveyorError('ERR_AUTH_HELPER', failure);
    auths[key] = {};
    where = `docker-credential-${helper}`;
  } else {
    auths[key] = { auth: Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64') };
  }
  config.auths = auths;
  await writeConfigObject(file, config);
  return where;
}

/**
 * Removes `registry`'s credentials as docker logout does: from its helper
 * (when one is configured) and every `auths` key that names it. Returns
 * whether anything was removed, and from where.
 */
export async function eraseCredentials(registry: string, options: CredentialOptions = {}): Promise<{ removed: boolean; from: string[] }> {
  const env = options.env ?? {};
  const file = configFile(options);
  const config = await readConfigObject(file);
  const key = configKey(registry);
  const auths = config.auths && typeof config.auths === 'object' && !Array.isArray(config.auths) ? (config.auths as Record<string, unknown>) : undefined;
  const keys = authKeys(auths, registry);
  const from: string[] = [];
  const helper = helperFor(config, registry);
  if (helper) {
    let erased = false;
    for (const server of new Set([key, ...keys])) {
      const failure = await runHelperAction(helper, 'erase', server, env);
      if (failure === undefined) erased = true;
      else if (!/credentials not found/i.test(failure)) throw new ConveyorError('ERR_AUTH_HELPER', failure);
    }
    if (erased) from.push(`docker-credential-${helper}`);
  }
  if (auths && keys.length > 0) {
    for (const k of keys) delete auths[k];
    await writeConfigObject(file, config);
    from.push(file);
  }
  return { removed: from.length > 0, from };
}

const SERVER_HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[a-fA-F0-9:]+\])(?::[0-9]{1,5})?$/;

/**
 * The registry a `docker login SERVER` argument names: `localhost:5000`,
 * `https://registry.example.com/v2/` → `registry.example.com`; Docker Hub's
 * spellings (none, `docker.io`, `index.docker.io`, `https://index.docker.io/v1/`)
 * → `docker.io`. Anything that is not a host is ERR_USAGE.
 */
export function serverRegistry(text: string | undefined): string {
  if (text === undefined || text.trim() === '') return DEFAULT_REGISTRY;
  const host = keyHostname(text.trim());
  if (!SERVER_HOST.test(host))
    throw new ConveyorError('ERR_USAGE', `not a registry: ${JSON.stringify(text)}`, { hint: 'name it as HOST[:PORT], e.g. localhost:5000' });
  return host;
}
