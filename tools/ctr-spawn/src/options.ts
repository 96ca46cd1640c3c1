/**
 * ctr-spawn's options and the small parsers behind its flags: environment
 * entries and env files, volumes, tmpfs mounts, --cpus, --security-opt, and
 * the working-directory check. Pure functions except for reading env files
 * and seccomp profiles and resolving the working directory in the rootfs;
 * no `process` (the host environment comes in as an argument).
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import { parseBytes } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE, type LogLimits } from '@conveyor/lib-common/container/log';
import { resolveInRoot } from './rootfs.js';
import type { DockerProfile } from './seccomp.js';
import type { Limits, Tmpfs, Volume } from './spec.js';

export interface SpawnOptions {
  /** Store root for records without `store`. */
  root: string;
  /** OCI runtime binary (name on PATH or path). */
  runtime: string;
  /** The runtime's own state directory (its --root). */
  runtimeRoot: string;
  /** Replaces the image Entrypoint; [] clears it (`--entrypoint ''`). */
  entrypoint?: string[];
  /** Words after `--`: replace the image Cmd. */
  command: string[];
  /** KEY=VAL entries from --env-file then -e, already resolved against our environment. */
  env: string[];
  workdir?: string;
  user?: string;
  hostname?: string;
  name?: string;
  netHost: boolean;
  readOnly: boolean;
  privileged: boolean;
  /** --security-opt seccomp=unconfined: no seccomp filter. */
  seccompUnconfined: boolean;
  /** --security-opt seccomp=FILE: this profile (Docker's format) instead of Docker's default. */
  seccompProfile?: DockerProfile;
  /** The host architecture (Node's process.arch), for the seccomp filter. */
  arch: string;
  capAdd: string[];
  capDrop: string[];
  volumes: Volume[];
  tmpfs: Tmpfs[];
  limits: Limits;
  interactive: boolean;
  tty: boolean;
  init: boolean;
  keep: boolean;
  /** --rm with -d: the supervisor removes the container when it ends (a foreground run is removed anyway). */
  autoRemove: boolean;
  detach: boolean;
  /** --log-opt max-size, max-file: the caps of a detached container's log. */
  log: LogLimits;
  printSpec: boolean;
  /** Run with this edited spec instead of building one. */
  specFile?: string;
}

const ENV_KEY = /^[^=\s][^=]*$/;

/**
 * `KEY=VAL` stays; `KEY` takes the value from `hostEnv`, and is dropped when
 * unset there (as docker run -e does).
 */
export function resolveEnvEntries(entries: string[], hostEnv: Record<string, string | undefined>, where = '--env'): string[] {
  const out: string[] = [];
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (!ENV_KEY.test(key)) throw new ConveyorError('ERR_USAGE', `${where}: invalid variable name in ${JSON.stringify(entry)}`);
    if (eq >= 0) out.push(entry);
    else if (hostEnv[key] !== undefined) out.push(`${key}=${hostEnv[key]}`);
  }
  return out;
}

/** Reads an env file: KEY=VAL or KEY per line, `#` comments and blank lines ignored. */
export async function readEnvFile(path: string, hostEnv: Record<string, string | undefined>): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConveyorError('ERR_USAGE', `--env-file ${path}: ${(error as Error).message}`);
  }
  const lines = text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  return resolveEnvEntries(
    lines.map((l) => l.replace(/^\s+/, '')),
    hostEnv,
    `--env-file ${path}`,
  );
}

/** Later entries win; the order of first appearance is kept. */
export function mergeEnv(...lists: string[][]): string[] {
  const map = new Map<string, string>();
  for (const list of lists) {
    for (const entry of list) {
      const eq = entry.indexOf('=');
      const key = eq < 0 ? entry : entry.slice(0, eq);
      map.set(key, entry);
    }
  }
  return [...map.values()];
}

export function envValue(env: string[], key: string): string | undefined {
  const entry = env.find((e) => e.startsWith(`${key}=`));
  return entry === undefined ? undefined : entry.slice(key.length + 1);
}

function containerPath(path: string, what: string): string {
  if (!path.startsWith('/')) throw new ConveyorError('ERR_USAGE', `${what}: container path must be absolute: ${JSON.stringify(path)}`);
  const clean = posix.normalize(path);
  if (clean === '/') throw new ConveyorError('ERR_USAGE', `${what}: cannot mount over /`);
  return clean.replace(/\/$/, '');
}

/** `-v /host:/ctr[:ro|rw]` — bind mounts only; host paths must be absolute. */
export function parseVolume(spec: string): Volume {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3) throw new ConveyorError('ERR_USAGE', `-v ${spec}: expected HOST:CONTAINER[:ro|rw]`);
  const [source, destination, mode = 'rw'] = parts;
  if (!isAbsolute(source))
    throw new ConveyorError('ERR_USAGE', `-v ${spec}: host path must be absolute`, { hint: 'named volumes are not supported; use an absolute host path' });
  const flags = mode.split(',');
  if (!flags.every((f) => ['ro', 'rw', 'z', 'Z'].includes(f)))
    throw new ConveyorError('ERR_USAGE', `-v ${spec}: unknown mode ${JSON.stringify(mode)}`, { hint: 'use ro or rw' });
  return { source: posix.normalize(source), destination: containerPath(destination, `-v ${spec}`), readOnly: flags.includes('ro') };
}

/** `--tmpfs /path[:opt,opt]`. */
export function parseTmpfs(spec: string): Tmpfs {
  const colon = spec.indexOf(':');
  const path = colon < 0 ? spec : spec.slice(0, colon);
  const options =
    colon < 0
      ? []
      : spec
          .slice(colon + 1)
          .split(',')
          .filter(Boolean);
  for (const option of options) {
    if (!/^[a-z0-9_]+(=[\w.:/-]+)?$/i.test(option)) throw new ConveyorError('ERR_USAGE', `--tmpfs ${spec}: bad option ${JSON.stringify(option)}`);
  }
  return { destination: containerPath(path, `--tmpfs ${spec}`), options };
}

/** `--cpus 1.5`. */
export function parseCpus(raw: string): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > 1024)
    throw new ConveyorError('ERR_USAGE', `--cpus must be a positive number, got ${JSON.stringify(raw)}`);
  return value;
}

/**
 * Parses --security-opt values: `seccomp=unconfined` or `seccomp=FILE` (a
 * profile in Docker's JSON format; `seccomp:` as older Docker spelled it).
 */
export function parseSecurityOpts(values: string[]): { seccompUnconfined: boolean; seccompProfileFile?: string } {
  let seccompUnconfined = false;
  let seccompProfileFile: string | undefined;
  for (const value of values) {
    const match = /^seccomp[=:](.+)$/.exec(value);
    if (!match)
      throw new ConveyorError('ERR_USAGE', `--security-opt ${JSON.stringify(value)} is not supported`, {
        hint: 'supported: seccomp=unconfined, seccomp=PROFILE.json',
      });
    if (match[1] === 'unconfined') seccompUnconfined = true;
    else seccompProfileFile = match[1];
  }
  if (seccompUnconfined && seccompProfileFile)
    throw new ConveyorError('ERR_USAGE', '--security-opt: seccomp=unconfined and a seccomp profile exclude each other');
  return { seccompUnconfined, seccompProfileFile };
}

/** Reads and checks a `--security-opt seccomp=FILE` profile. */
export async function loadSeccompProfile(path: string): Promise<DockerProfile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConveyorError('ERR_USAGE', `--security-opt seccomp=${path}: ${(error as Error).message}`);
  }
  const { parseProfile } = await import('./seccomp.js');
  return parseProfile(text, path);
}

/**
 * Refuses a working directory in /proc, textually or once symlinks in the
 * image are resolved: runc enters it after /proc is mounted, so a WorkingDir
 * of /proc/self/fd/N (or a symlink to it) starts the process in a directory
 * of the host that a leaked descriptor points at (CVE-2024-21626).
 */
export async function checkWorkdir(rootfs: string, cwd: string): Promise<void> {
  const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
  const resolved = await resolveInRoot(rootfs, cwd);
  if (under(posix.normalize(cwd), '/proc') || under(resolved, `${rootfs.replace(/\/+$/, '')}/proc`)) {
    throw new ConveyorError('ERR_SPAWN_UNSAFE_WORKDIR', `working directory ${JSON.stringify(cwd)} is in /proc`, {
      hint: 'a working directory under /proc can reach the host through a leaked descriptor (CVE-2024-21626); choose another with -w',
    });
  }
}

/**
 * `--log-opt max-size=SIZE` and `--log-opt max-file=N` (Docker's json-file
 * options) into the log's caps; the defaults for what is not given.
 */
export function parseLogOpts(entries: string[]): LogLimits {
  const limits: LogLimits = { maxSize: DEFAULT_LOG_MAX_SIZE, maxFiles: DEFAULT_LOG_MAX_FILES };
  for (const entry of entries) {
    const at = entry.indexOf('=');
    const key = at < 0 ? entry : entry.slice(0, at);
    const value = at < 0 ? '' : entry.slice(at + 1);
    if (key === 'max-size') {
      limits.maxSize = parseBytes(value, '--log-opt max-size');
      if (limits.maxSize < 1024) throw new ConveyorError('ERR_USAGE', `--log-opt max-size must be at least 1k, got ${JSON.stringify(value)}`);
    } else if (key === 'max-file') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1 || n > 100)
        throw new ConveyorError('ERR_USAGE', `--log-opt max-file must be a whole number from 1 to 100, got ${JSON.stringify(value)}`);
      limits.maxFiles = n;
    } else {
      throw new ConveyorError('ERR_USAGE', `unknown --log-opt ${JSON.stringify(key)}`, { hint: 'max-size=SIZE or max-file=N' });
    }
  }
  return limits;
}
