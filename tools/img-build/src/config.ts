/**
 * The image config a build writes, step by step, as Docker's classic builder
 * and buildah write it: metadata instructions change `config` and add a
 * history entry with `empty_layer: true` and `created_by` like
 * `/bin/sh -c #(nop)  ENV A=b`; RUN's `created_by` is the shell command with
 * the build args in scope as a `|N K=V …` prefix. Pure functions over plain
 * objects: the builder decides when a step makes a layer.
 */
import { posix } from 'node:path';
import { hostPlatform } from '@conveyor/lib-common/platform';
import type { Descriptor } from '@conveyor/lib-common/records';
import type { ImageConfigBlob } from '@conveyor/lib-common/image';
import type { Step } from './dockerfile/steps.js';
import type { BuildState, HistoryEntry } from './cache.js';

/** The runtime config keys a Dockerfile sets (ImageRuntimeConfig and the ones it does not type). */
export interface RunConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  Shell?: string[];
  Healthcheck?: Record<string, unknown>;
  OnBuild?: string[] | null;
  [key: string]: unknown;
}

export const DEFAULT_SHELL = ['/bin/sh', '-c'];
/** Docker's PATH for a Linux image that sets none (moby system.DefaultPathEnv). */
export const DEFAULT_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The state of `FROM scratch`: no layers, the host's platform, Docker's default PATH. */
export function scratchState(): BuildState {
  const platform = hostPlatform();
  return {
    config: {
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      config: { Env: [DEFAULT_PATH_ENV] },
      rootfs: { type: 'layers', diff_ids: [] },
      history: [],
    },
    layers: [],
  };
}

/** The state of `FROM image`: its config (history and all) and its layers, copied. */
export function imageState(config: ImageConfigBlob, layers: Descriptor[]): BuildState {
  const copy = structuredClone(config) as BuildState['config'];
  copy.config = { ...(copy.config ?? {}) };
  const run = copy.config as RunConfig;
  // Docker gives every stage a PATH: an image without one gets the default.
  if (!(run.Env ?? []).some((e) => e.startsWith('PATH='))) run.Env = [DEFAULT_PATH_ENV, ...(run.Env ?? [])];
  copy.rootfs = { type: 'layers', diff_ids: [...(config.rootfs?.diff_ids ?? [])] };
  copy.history = Array.isArray(config.history) ? (structuredClone(config.history) as HistoryEntry[]) : [];
  return { config: copy, layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })) };
}

export function runConfigOf(state: BuildState): RunConfig {
  return (state.config.config ?? {}) as RunConfig;
}

/** `KEY` → value of the config's Env, the last one winning as the runtime sees it. */
export function envMap(env: string[] | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of env ?? []) {
    const eq = entry.indexOf('=');
    if (eq > 0) map.set(entry.slice(0, eq), entry.slice(eq + 1));
    else if (eq < 0) map.set(entry, '');
  }
  return map;
}

function setEnv(env: string[] | undefined, key: string, value: string): string[] {
  const out = (env ?? []).filter((e) => e !== key && !e.startsWith(`${key}=`));
  // Docker keeps the variable's first position when it is replaced.
  const at = (env ?? []).findIndex((e) => e === key || e.startsWith(`${key}=`));
  if (at >= 0) {
    out.splice(Math.min(at, out.length), 0, `${key}=${value}`);
    return out;
  }
  return [...out, `${key}=${value}`];
}

/** A WORKDIR's absolute path: relative ones against the current one, cleaned as Go's filepath.Clean (no trailing `/`). */
export function resolveWorkdir(current: string | undefined, path: string): string {
  const cleaned = posix.normalize(posix.isAbsolute(path) ? path : posix.join(current || '/', path));
  return cleaned.length > 1 ? cleaned.replace(/\/+$/, '') : cleaned;
}

/** `80`, `80/udp`, `8000-8002/tcp` → Docker's `80/tcp` keys. */
export function exposedPorts(ports: string[]): string[] {
  const keys: string[] = [];
  for (const port of ports) {
    const [range, proto = 'tcp'] = port.toLowerCase().split('/');
    const [first, last = first] = range.split('-');
    const start = Number(first);
    const end = Number(last);
    if (Number.isInteger(start) && Number.isInteger(end) && end >= start && end - start < 65536) {
      for (let p = start; p <= end; p++) keys.push(`${p}/${proto}`);
    } else keys.push(`${range}/${proto}`);
  }
  return keys;
}

/** Docker's classic-builder text of a metadata step, after `#(nop) `. */
export function nopText(step: Step): string {
  switch (step.kind) {
    case 'ENV':
      return `ENV ${step.pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
    case 'LABEL':
      return `LABEL ${step.pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`;
    case 'ARG':
      return `ARG ${step.args.map((a) => (a.default === undefined ? a.name : `${a.name}=${a.default}`)).join(' ')}`;
    case 'WORKDIR':
      return `WORKDIR ${step.path}`;
    case 'USER':
      return `USER ${step.user}`;
    case 'ENTRYPOINT':
    case 'CMD':
      return `${step.kind} ${JSON.stringify(step.exec ?? [step.script ?? ''])}`;
    case 'EXPOSE':
      return `EXPOSE ${step.ports.join(' ')}`;
    case 'VOLUME':
      return `VOLUME ${JSON.stringify(step.paths)}`;
    case 'STOPSIGNAL':
      return `STOPSIGNAL ${step.signal}`;
    case 'SHELL':
      return `SHELL ${JSON.stringify(step.shell)}`;
    case 'HEALTHCHECK':
      return `HEALTHCHECK ${JSON.stringify(step.healthcheck)}`;
    case 'ONBUILD':
      return `ONBUILD ${step.instruction}`;
    case 'MAINTAINER':
      return `MAINTAINER ${step.author}`;
    default:
      return step.original;
  }
}

/**
 * Applies a metadata step (no filesystem change) to a copy of the run config.
 * `shell` is the stage's SHELL for shell-form CMD/ENTRYPOINT; `cmdSet` says
 * whether this stage set CMD already (an ENTRYPOINT then keeps it, else it
 * clears the Cmd inherited from the base, as Docker does).
 */
export function applyMetadata(config: RunConfig, step: Step, cmdSet: boolean): RunConfig {
  const next: RunConfig = structuredClone(config);
  const shell = next.Shell && next.Shell.length > 0 ? next.Shell : DEFAULT_SHELL;
  switch (step.kind) {
    case 'ENV':
      for (const [k, v] of step.pairs) next.Env = setEnv(next.Env, k, v);
      break;
    case 'LABEL':
      next.Labels = { ...(next.Labels ?? {}) };
      for (const [k, v] of step.pairs) next.Labels[k] = v;
      break;
    case 'WORKDIR':
      next.WorkingDir = resolveWorkdir(next.WorkingDir, step.path);
      break;
    case 'USER':
      next.User = step.user;
      break;
    case 'CMD':
      next.Cmd = step.exec ?? [...shell, step.script ?? ''];
      break;
    case 'ENTRYPOINT':
      next.Entrypoint = step.exec ?? [...shell, step.script ?? ''];
      if (!cmdSet) next.Cmd = null;
      break;
    case 'EXPOSE':
      next.ExposedPorts = { ...(next.ExposedPorts ?? {}) };
      for (const key of exposedPorts(step.ports)) next.ExposedPorts[key] = {};
      break;
    case 'VOLUME':
      next.Volumes = { ...(next.Volumes ?? {}) };
      for (const path of step.paths) next.Volumes[path] = {};
      break;
    case 'STOPSIGNAL':
      next.StopSignal = step.signal;
      break;
    case 'SHELL':
      next.Shell = step.shell;
      break;
    case 'HEALTHCHECK':
      next.Healthcheck = step.healthcheck;
      break;
    case 'ONBUILD':
      next.OnBuild = [...(next.OnBuild ?? []), step.instruction];
      break;
    default:
      break;
  }
  return next;
}

/** `|2 A=1 B=2 ` before a RUN's command in history: the build args in scope, sorted, as Docker writes them. */
export function argPrefix(args: [string, string][]): string {
  if (args.length === 0) return '';
  const words = args.map(([k, v]) => `${k}=${v}`).sort();
  return `|${words.length} ${words.join(' ')} `;
}

/** Appends a history entry and returns the new state (immutably). */
export function withHistory(state: BuildState, entry: HistoryEntry): BuildState {
  return { ...state, config: { ...state.config, history: [...(state.config.history ?? []), entry] } };
}

/** Returns the state with one more layer on top. */
export function withLayer(state: BuildState, layer: Descriptor, diffID: string): BuildState {
  return {
    layers: [...state.layers, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size }],
    config: { ...state.config, rootfs: { type: 'layers', diff_ids: [...(state.config.rootfs?.diff_ids ?? []), diffID] } },
  };
}
