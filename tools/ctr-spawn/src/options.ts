/**
 * ctr-spawn's options and the small parsers behind its flags: volumes, tmpfs
 * mounts, --cpus, --security-opt, --log-opt. Pure functions except for
 * reading seccomp profiles; no `process`. Environment entries, env files and
 * the working-directory check are lib-common's (container/env,
 * container/rootfs), shared with ctr-exec.
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, posix } from 'node:path';
import { parseBytes } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { DEFAULT_LOG_MAX_FILES, DEFAULT_LOG_MAX_SIZE, type LogLimits } from '@conveyor/lib-common/container/log';
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
