/**
 * img-build's engine: a parsed Dockerfile, its build context and options in;
 * the image written to the store and its `image` records out.
 *
 * Stages: only those the target needs (its FROM chain and `COPY --from`
 * sources, as BuildKit decides), in Dockerfile order. Each stage's state
 * (config with history, layers) goes step by step: metadata steps change the
 * config, filesystem steps (RUN, COPY, ADD, WORKDIR) mount the stage's
 * layers with a fresh upper dir (rootfs.ts), change it (a container through
 * ctr-spawn, the copy code, a mkdir) and pack the upper dir into a layer.
 * That upper dir, unmounted, is the new layer's lower dir for the later
 * steps of this build (no unpacking of what was just packed); the step
 * containers go when the build ends, however it ends. Every step's state is cached under a key chained from its parent's
 * (cache.ts); a hit restores the state without mounting or spawning.
 *
 * Failure: whatever a step throws, after its container is unmounted and
 * removed; a RUN that exits non-zero is ERR_BUILD_STEP naming the line and
 * the code; a cancelled build (signal) is ERR_BUILD_CANCELLED. Nothing is
 * tagged then; the cache keeps the steps that finished.
 */
import { posix } from 'node:path';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { hostPlatform, formatPlatform } from '@conveyor/lib-common/platform';
import type { ContainerPaths } from '@conveyor/lib-common/overlay/mount';
import { mkdirInRoot } from '@conveyor/lib-common/container/rootfs';
import { chainIDs } from '@conveyor/lib-common/digest';
import type { ImageRecord } from '@conveyor/lib-common/records';
import type { Store } from '@conveyor/lib-common/store';
import { readCacheEntry, stepKey, writeCacheEntry, type BuildState, type HistoryEntry } from './cache.js';
import {
  applyMetadata,
  argPrefix,
  DEFAULT_SHELL,
  envMap,
  imageState,
  nopText,
  resolveWorkdir,
  runConfigOf,
  scratchState,
  withHistory,
  withLayer,
} from './config.js';
import type { BuildContext } from './context.js';
import { parseDockerfile } from './dockerfile/parse.js';
import { resolveStep } from './dockerfile/resolve.js';
import { splitStages, type Stage } from './dockerfile/stages.js';
import { expandWord } from './dockerfile/expand.js';
import type { Heredoc, Instruction, Lookup, Step } from './dockerfile/steps.js';
import { type BaseImageOptions, baseImage } from './base.js';
// The copy code and the packer (tar-fs, zlib, http) load when a step needs them: a cached rebuild skips most of it.
import type { CopyOptions } from './copy/index.js';
import { writeImage } from './image.js';
import type { StepProgress } from './progress.js';
import { globMatch } from './patterns.js';
import type { LayerDirsOptions } from './rootfs.js';
import { heredocFileName, runInContainer } from './run-step.js';
import type { ToolRunner } from './tools.js';

/** Build args Docker defines without an ARG: usable in RUN, never in history or the cache key unless declared. */
export const PROXY_ARGS = [
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
];

export interface BuildOptions {
  store: Store;
  context: BuildContext;
  dockerfile: { text: string; name: string };
  /** Normalised references to tag. */
  tags: string[];
  buildArgs: Map<string, string>;
  target?: string;
  noCache: boolean;
  pull: boolean;
  network?: 'default' | 'none' | 'host';
  labels: [string, string][];
  /** SOURCE_DATE_EPOCH, seconds: history times and the layers' clamped mtimes. */
  sourceDateEpoch?: number;
  now: () => Date;
  runner: ToolRunner;
  progress: StepProgress;
  /** Flags passed on to img-fetch, layer-unpack, ctr-spawn (--root, --log-format, registry flags for img-fetch). */
  fetchArgs: string[];
  toolArgs: string[];
  warn: (message: string) => void;
  signal?: AbortSignal;
  /** Rootless (in the user's namespace keeper): how overlays are mounted (rootfs.ts). */
  rootless?: boolean;
  driver?: LayerDirsOptions['driver'];
}

export interface BuildResult {
  digest: string;
  records: ImageRecord[];
  /** Steps run and steps taken from the cache (FROM not counted). */
  ran: number;
  cached: number;
}

interface StageResult {
  state: BuildState;
  key: string;
  /** The reference its layers are named by in layer records (messages only). */
  ref: string;
}

interface StageScope {
  /** ARGs declared in this stage, with their values (undefined: declared without one). */
  args: Map<string, string | undefined>;
  cmdSet: boolean;
}

/** The platform args BuildKit predefines in the global scope (this build only makes the host's). */
function platformArgs(): Map<string, string> {
  const p = hostPlatform();
  const platform = formatPlatform(p);
  const values: [string, string][] = [
    ['TARGETPLATFORM', platform],
    ['TARGETOS', p.os],
    ['TARGETARCH', p.architecture],
    ['TARGETVARIANT', p.variant ?? ''],
    ['BUILDPLATFORM', platform],
    ['BUILDOS', p.os],
    ['BUILDARCH', p.architecture],
    ['BUILDVARIANT', p.variant ?? ''],
  ];
  return new Map(values);
}

/** How FROM and COPY --from images are found or pulled. */
function baseImageOptions(options: BuildOptions): BaseImageOptions {
  return {
    store: options.store,
    runner: options.runner,
    pull: options.pull,
    fetchArgs: options.fetchArgs,
    unpackArgs: options.toolArgs,
    onStderr: (chunk) => options.progress.toolMessage(chunk),
  };
}

export async function build(options: BuildOptions): Promise<BuildResult> {
  const dockerfile = parseDockerfile(options.dockerfile.text, { file: options.dockerfile.name });
  // As docker build: the parser's warnings (empty continuation lines, …) on stderr, each naming its line.
  for (const warning of dockerfile.warnings ?? []) options.warn(warning);
  const escapeChar = dockerfile.directives.escape;
  const { globalArgs, stages } = splitStages(dockerfile);
  if (stages.length === 0) throw parseFailure(options, 1, 'no FROM instruction', 'a Dockerfile starts with FROM (after ARGs and parser directives)');
  const usedArgs = new Set<string>();

  // Global ARGs: visible to FROM lines, and as defaults to a stage's re-declaration.
  const predefined = platformArgs();
  const globals = new Map<string, string | undefined>();
  const globalLookup: Lookup = (name) => (globals.has(name) ? globals.get(name) : predefined.get(name));
  for (const instruction of globalArgs) {
    const step = resolveStep(instruction, globalLookup, escapeChar);
    if (step.kind !== 'ARG') continue;
    for (const arg of step.args) {
      if (options.buildArgs.has(arg.name)) usedArgs.add(arg.name);
      globals.set(arg.name, options.buildArgs.get(arg.name) ?? arg.default);
    }
  }

  const target = pickTarget(stages, options);
  const needed = neededStages(stages, target, globalLookup, escapeChar);
  const building = stages.filter((s) => needed.has(s.index));
  precheck(building, escapeChar, options);
  const total = building.reduce((sum, s) => sum + 1 + s.instructions.length, 0);
  const counter = { index: 0, total, ran: 0, cached: 0 };
  const results = new Map<number, StageResult>();
  const made = new Map<string, string>();
  const kept: string[] = [];
  try {
    for (const stage of building) {
      results.set(
        stage.index,
        await buildStage(stage, { options, escapeChar, globals, globalLookup, predefined, stages, results, counter, usedArgs, made, kept }),
      );
    }
  } finally {
    // The steps' upper dirs served as lower dirs of later steps; their layers are in the store now.
    await Promise.all(kept.map((id) => removeContainer(options.store, id)));
  }
  const unused = [...options.buildArgs.keys()].filter((k) => !usedArgs.has(k) && !PROXY_ARGS.includes(k));
  if (unused.length > 0) options.warn(`one or more build args were not consumed: ${unused.sort().join(', ')}`);

  const final = results.get(target.index)!;
  const written = await writeImage({ store: options.store, state: final.state, tags: options.tags, labels: options.labels, created: timestamp(options) });
  options.progress.finished(written.manifestDescriptor.digest, options.tags);
  return { digest: written.manifestDescriptor.digest, records: written.records, ran: counter.ran, cached: counter.cached };
}

/**
 * Resolves, before anything runs, every instruction of the stages to build
 * whose result cannot depend on variables (no `$` in it or its heredocs), so
 * an unknown flag or a malformed argument fails the build at once, naming
 * its line, instead of after the steps before it ran. The others are checked
 * when the build reaches them, their variables known.
 */
function precheck(stages: Stage[], escapeChar: '\\' | '`', options: BuildOptions): void {
  const none: Lookup = () => undefined;
  for (const stage of stages) {
    for (const instruction of [stage.from, ...stage.instructions]) {
      if (instruction.original.includes('$') || instruction.heredocs.some((h) => h.content.includes('$'))) continue;
      const step = resolveStep(instruction, none, escapeChar);
      if ((step.kind === 'COPY' || step.kind === 'ADD') && step.chmod !== undefined) parseChmod(step.chmod, options, step.line);
      if (step.kind === 'COPY' || step.kind === 'ADD') for (const source of step.sources) checkSourcePattern(source, step, options);
    }
  }
}

/** A malformed wildcard in a COPY/ADD source fails before any step runs, naming its line (URLs are not patterns). */
function checkSourcePattern(source: string, step: Extract<Step, { kind: 'COPY' | 'ADD' }>, options: BuildOptions): void {
  if (!/[*?[\\]/.test(source) || (step.kind === 'ADD' && /^https?:\/\//i.test(source))) return;
  try {
    globMatch(source.replace(/^\/+/, ''), '');
  } catch (error) {
    throw withLine(error, options, step.line);
  }
}

/** An ERR_DOCKERFILE_PARSE raised below a step (a bad source pattern) names the step's line, as the parser's errors do. */
function withLine(error: unknown, options: BuildOptions, line: number): unknown {
  if (error instanceof ConveyorError && error.code === 'ERR_DOCKERFILE_PARSE' && !error.message.startsWith(`${options.dockerfile.name}:`)) {
    return parseFailure(options, line, error.message, error.hint);
  }
  return error;
}

function parseFailure(options: BuildOptions, line: number, message: string, hint?: string): ConveyorError {
  return new ConveyorError('ERR_DOCKERFILE_PARSE', `${options.dockerfile.name}:${line}: ${message}`, { hint, details: { line } });
}

function timestamp(options: BuildOptions): string {
  return options.sourceDateEpoch !== undefined ? new Date(options.sourceDateEpoch * 1000).toISOString() : options.now().toISOString();
}

function pickTarget(stages: Stage[], options: BuildOptions): Stage {
  if (options.target === undefined) return stages[stages.length - 1];
  const wanted = options.target.toLowerCase();
  const found = stages.find((s) => s.name === wanted);
  if (!found) {
    const names = stages.map((s) => s.name).filter(Boolean);
    throw new ConveyorError('ERR_USAGE', `--target ${options.target}: no stage of that name in ${options.dockerfile.name}`, {
      hint: names.length > 0 ? `stages: ${names.join(', ')}` : 'name a stage with FROM … AS NAME',
    });
  }
  return found;
}

/** The stage an image word or `--from` value names (a name or an index of an earlier stage), if any. */
function stageNamed(stages: Stage[], word: string, before: number): Stage | undefined {
  const lower = word.toLowerCase();
  const byName = stages.find((s) => s.index < before && s.name === lower);
  if (byName) return byName;
  if (/^\d+$/.test(word)) {
    const index = Number(word);
    if (index < before) return stages.find((s) => s.index === index);
  }
  return undefined;
}

function fromWord(stage: Stage, lookup: Lookup, escapeChar: '\\' | '`'): string {
  const words = stage.from.rest.trim().split(/\s+/);
  return expandWord(words[0] ?? '', lookup, escapeChar);
}

function copyFromValue(instruction: Instruction, lookup: Lookup, escapeChar: '\\' | '`'): string | undefined {
  if (instruction.keyword !== 'COPY' && instruction.keyword !== 'ADD') return undefined;
  const flag = instruction.flags.find((f) => f.name === 'from');
  return flag ? expandWord(flag.value, lookup, escapeChar) : undefined;
}

/** The target and every stage it depends on through FROM and COPY --from (BuildKit builds no other). */
function neededStages(stages: Stage[], target: Stage, lookup: Lookup, escapeChar: '\\' | '`'): Set<number> {
  const needed = new Set<number>();
  const visit = (stage: Stage) => {
    if (needed.has(stage.index)) return;
    needed.add(stage.index);
    const base = stageNamed(stages, fromWord(stage, lookup, escapeChar), stage.index);
    if (base) visit(base);
    for (const instruction of stage.instructions) {
      const from = copyFromValue(instruction, lookup, escapeChar);
      const source = from === undefined ? undefined : stageNamed(stages, from, stage.index);
      if (source) visit(source);
    }
  };
  visit(target);
  return needed;
}

interface StageContext {
  options: BuildOptions;
  escapeChar: '\\' | '`';
  globals: Map<string, string | undefined>;
  globalLookup: Lookup;
  predefined: Map<string, string>;
  stages: Stage[];
  results: Map<number, StageResult>;
  counter: { index: number; total: number; ran: number; cached: number };
  usedArgs: Set<string>;
  /** Upper dirs of this build's steps that made a layer, by chain ID: the lower dirs of later steps. */
  made: Map<string, string>;
  /** Their container ids, removed when the build ends. */
  kept: string[];
}

function checkCancelled(options: BuildOptions): void {
  if (options.signal?.aborted) throw new ConveyorError('ERR_BUILD_CANCELLED', 'build cancelled', { exitCode: cancelExitCode(options.signal) });
}

function cancelExitCode(signal: AbortSignal): number {
  return signal.reason === 'SIGINT' ? 130 : 143;
}

async function buildStage(stage: Stage, ctx: StageContext): Promise<StageResult> {
  const { options, escapeChar } = ctx;
  const stageLabel = stage.name ?? String(stage.index);
  checkCancelled(options);
  const fromStep = resolveStep(stage.from, ctx.globalLookup, escapeChar);
  if (fromStep.kind !== 'FROM') throw parseFailure(options, stage.from.line, 'expected FROM');
  ctx.counter.index += 1;
  options.progress.start({ index: ctx.counter.index, total: ctx.counter.total, instruction: stage.from.original, line: stage.from.line, stage: stageLabel });
  if (fromStep.platform !== undefined && fromStep.platform !== '' && fromStep.platform !== formatPlatform(hostPlatform())) {
    const host = hostPlatform();
    if (fromStep.platform !== `${host.os}/${host.architecture}`) {
      throw parseFailure(
        options,
        stage.from.line,
        `FROM --platform=${fromStep.platform}: img-build builds for this host's platform only (${formatPlatform(host)})`,
      );
    }
  }
  let current: StageResult;
  const earlier = stageNamed(ctx.stages, fromStep.image, stage.index);
  if (earlier) {
    const built = ctx.results.get(earlier.index);
    if (!built) throw new ConveyorError('ERR_INTERNAL', `stage ${earlier.name ?? earlier.index} was not built before ${stageLabel}`);
    current = { state: structuredClone(built.state), key: built.key, ref: built.ref };
  } else if (fromStep.image.toLowerCase() === 'scratch') {
    current = { state: scratchState(), key: baseKey(options, 'scratch'), ref: 'scratch' };
  } else {
    const image = await baseImage(fromStep.image, baseImageOptions(options));
    if ((image.config.config as { OnBuild?: unknown[] } | undefined)?.OnBuild?.length) {
      options.warn(`${options.dockerfile.name}:${stage.from.line}: the base image's ONBUILD triggers are not run`);
    }
    current = { state: imageState(image.config, image.manifest.layers), key: baseKey(options, image.record.digest), ref: image.record.ref };
  }
  options.progress.done({ cached: false });

  const scope: StageScope = { args: new Map(), cmdSet: false };
  for (const instruction of stage.instructions) {
    checkCancelled(options);
    ctx.counter.index += 1;
    options.progress.start({
      index: ctx.counter.index,
      total: ctx.counter.total,
      instruction: instruction.original,
      line: instruction.line,
      stage: stageLabel,
    });
    current = await buildStep(instruction, current, scope, ctx);
  }
  return current;
}

/**
 * A stage's first key: its base (a manifest digest, or scratch), and
 * SOURCE_DATE_EPOCH, which sets every step's history time and clamps the
 * files' times, so a build with it never reuses steps made without it.
 */
function baseKey(options: BuildOptions, base: string): string {
  return stepKey('', { from: base, sourceDateEpoch: options.sourceDateEpoch ?? null });
}

/** Variables for expansion: ENV wins over ARG, as Docker's. */
function stageLookup(state: BuildState, scope: StageScope): Lookup {
  const env = envMap(runConfigOf(state).Env);
  return (name) => (env.has(name) ? env.get(name) : scope.args.get(name));
}

/** Build args in scope with a value, as RUN sees them (ENV of the same name wins: it is in Env already). */
function argsInScope(state: BuildState, scope: StageScope): [string, string][] {
  const env = envMap(runConfigOf(state).Env);
  return [...scope.args.entries()].filter((e): e is [string, string] => e[1] !== undefined && !env.has(e[0]));
}

async function buildStep(instruction: Instruction, current: StageResult, scope: StageScope, ctx: StageContext): Promise<StageResult> {
  const { options } = ctx;
  const step = resolveStep(instruction, stageLookup(current.state, scope), ctx.escapeChar);
  const created = timestamp(options);
  if (step.kind === 'FROM') throw parseFailure(options, step.line, 'FROM inside a stage');

  if (step.kind === 'ARG') {
    for (const arg of step.args) {
      if (options.buildArgs.has(arg.name)) ctx.usedArgs.add(arg.name);
      const value = options.buildArgs.get(arg.name) ?? arg.default ?? (ctx.globals.has(arg.name) ? ctx.globals.get(arg.name) : ctx.predefined.get(arg.name));
      scope.args.set(arg.name, value);
    }
    const description = { kind: 'ARG', args: step.args.map((a) => [a.name, scope.args.get(a.name) ?? null]) };
    return metadataStep(description, current, ctx, (state) =>
      withHistory(state, { created, created_by: `/bin/sh -c #(nop)  ${nopText(step)}`, empty_layer: true }),
    );
  }

  if (step.kind === 'RUN') return runStep(step, current, scope, ctx, created);
  if (step.kind === 'COPY' || step.kind === 'ADD') return copyStep(step, current, ctx, created);
  if (step.kind === 'WORKDIR') return workdirStep(step, current, ctx, created);

  const cmdSet = scope.cmdSet;
  if (step.kind === 'CMD') scope.cmdSet = true;
  const description = { kind: step.kind, step: { ...step, line: undefined, original: undefined }, cmdSet };
  return metadataStep(description, current, ctx, (state) => {
    const next = structuredClone(state);
    next.config.config = applyMetadata(runConfigOf(state), step, cmdSet) as typeof next.config.config;
    if (step.kind === 'MAINTAINER') (next.config as { author?: string }).author = step.author;
    return withHistory(next, { created, created_by: `/bin/sh -c #(nop)  ${nopText(step)}`, empty_layer: true });
  });
}

/** A step that changes the config only: from the cache, or computed (no mount, no spawn either way). */
async function metadataStep(description: unknown, current: StageResult, ctx: StageContext, apply: (state: BuildState) => BuildState): Promise<StageResult> {
  const key = stepKey(current.key, description);
  const hit = ctx.options.noCache ? undefined : await readCacheEntry(ctx.options.store, key);
  if (hit) {
    ctx.counter.cached += 1;
    ctx.options.progress.cached();
    ctx.options.progress.done({ cached: true });
    return { state: hit, key, ref: current.ref };
  }
  const state = apply(current.state);
  await writeCacheEntry(ctx.options.store, key, state, undefined, ctx.options.now());
  ctx.counter.ran += 1;
  ctx.options.progress.done({ cached: false });
  return { state, key, ref: current.ref };
}

// Mounting code (overlay/mount and what it imports) loads only when a step mounts: an all-cached build never does.
type MountModule = typeof import('./rootfs.js');
type OverlayModule = typeof import('@conveyor/lib-common/overlay/mount');

async function mountStage(...args: Parameters<MountModule['mountStage']>): ReturnType<MountModule['mountStage']> {
  return (await import('./rootfs.js')).mountStage(...args);
}

async function removeContainer(...args: Parameters<OverlayModule['removeContainer']>): ReturnType<OverlayModule['removeContainer']> {
  return (await import('@conveyor/lib-common/overlay/mount')).removeContainer(...args);
}

function layerOptions(ctx: StageContext, ref: string): LayerDirsOptions {
  return {
    store: ctx.options.store,
    runner: ctx.options.runner,
    unpackArgs: ctx.options.toolArgs,
    onStderr: (chunk) => ctx.options.progress.toolMessage(chunk),
    ref,
    made: ctx.made,
    rootless: ctx.options.rootless,
    driver: ctx.options.driver,
  };
}

/**
 * A step that changes the filesystem: from the cache, or run on a fresh
 * overlay of the stage (always unmounted and removed after), its upper dir
 * packed into a layer. `keepEmpty`: an empty upper still makes a layer (RUN,
 * COPY, as Docker's classic builder); otherwise no layer (WORKDIR of a
 * directory that exists).
 */
async function filesystemStep(
  description: unknown,
  current: StageResult,
  ctx: StageContext,
  history: Omit<HistoryEntry, 'empty_layer'>,
  keepEmpty: boolean,
  work: (paths: ContainerPaths) => Promise<void>,
  configure: (state: BuildState) => BuildState = (state) => state,
): Promise<StageResult> {
  const { options } = ctx;
  const key = stepKey(current.key, description);
  const hit = options.noCache ? undefined : await readCacheEntry(options.store, key);
  if (hit) {
    ctx.counter.cached += 1;
    options.progress.cached();
    const top = hit.layers.length > current.state.layers.length ? hit.layers[hit.layers.length - 1].digest : undefined;
    options.progress.done({ cached: true, layer: top });
    return { state: hit, key, ref: current.ref };
  }
  const paths = await mountStage(current.state, layerOptions(ctx, current.ref));
  let state: BuildState;
  let newLayer: string | undefined;
  let keep = false;
  try {
    await work(paths);
    checkCancelled(options);
    const { packLayer } = await import('./layer/pack.js');
    const packed = await packLayer({ upperDir: paths.upper, store: options.store, sourceDateEpoch: options.sourceDateEpoch });
    if (packed.empty && !keepEmpty) {
      state = configure(withHistory(current.state, { ...history, empty_layer: true }));
    } else {
      state = configure(withHistory(withLayer(current.state, packed.descriptor, packed.diffID), history));
      newLayer = packed.descriptor.digest;
    }
    if (newLayer) {
      // Unmounted but kept: its upper dir is the new layer, the lower dir of the next steps.
      await removeContainer(options.store, paths.id, { keepDir: true });
      ctx.made.set(chainIDs(state.config.rootfs?.diff_ids ?? []).at(-1)!, paths.upper);
      ctx.kept.push(paths.id);
      keep = true;
    }
  } finally {
    if (!keep) await removeContainer(options.store, paths.id);
  }
  checkCancelled(options);
  await writeCacheEntry(options.store, key, state, newLayer, options.now());
  ctx.counter.ran += 1;
  options.progress.done({ cached: false, layer: newLayer });
  return { state, key, ref: current.ref };
}

async function workdirStep(step: Extract<Step, { kind: 'WORKDIR' }>, current: StageResult, ctx: StageContext, created: string): Promise<StageResult> {
  const run = runConfigOf(current.state);
  const path = resolveWorkdir(run.WorkingDir, step.path);
  const description = { kind: 'WORKDIR', path };
  const history = { created, created_by: `/bin/sh -c #(nop)  WORKDIR ${path}` };
  return filesystemStep(
    description,
    current,
    ctx,
    history,
    false,
    async (paths) => {
      await mkdirInRoot(paths.merged, path);
    },
    (state) => {
      const next = structuredClone(state);
      next.config.config = { ...runConfigOf(state), WorkingDir: path } as typeof next.config.config;
      return next;
    },
  );
}

/** The argv of a RUN and, for a heredoc run as a file, that heredoc. */
function runCommand(step: Extract<Step, { kind: 'RUN' }>, shell: string[]): { argv: string[]; scriptFile?: Heredoc } {
  if (step.exec) return { argv: step.exec };
  const script = step.script ?? '';
  if (step.heredocs.length === 1 && /^<<-?(["']?)[^\s"']+\1$/.test(script.trim())) {
    // `RUN <<EOF` alone: the body is the script (BuildKit runs it as a file; with a `#!` line, by that interpreter).
    const heredoc = step.heredocs[0];
    if (heredoc.content.startsWith('#!')) {
      return { argv: [`/dev/pipes/${heredocFileName(heredoc.name)}`], scriptFile: heredoc };
    }
    return { argv: [...shell, heredoc.content] };
  }
  // Heredocs among other words: the shell reads them, bodies and terminators put back after the command.
  const bodies = step.heredocs.map((h) => `${h.content}${h.name}\n`).join('');
  return { argv: [...shell, step.heredocs.length > 0 ? `${script}\n${bodies}` : script] };
}

async function runStep(
  step: Extract<Step, { kind: 'RUN' }>,
  current: StageResult,
  scope: StageScope,
  ctx: StageContext,
  created: string,
): Promise<StageResult> {
  const { options } = ctx;
  const run = runConfigOf(current.state);
  const shell = run.Shell && run.Shell.length > 0 ? run.Shell : DEFAULT_SHELL;
  const { argv, scriptFile } = runCommand(step, shell);
  const args = argsInScope(current.state, scope);
  const proxies = PROXY_ARGS.filter((k) => options.buildArgs.has(k) && !scope.args.has(k)).map((k) => [k, options.buildArgs.get(k)!] as [string, string]);
  const network = step.network ?? options.network ?? 'default';
  const description = { kind: 'RUN', argv, heredocs: step.heredocs, network, args };
  const createdBy = `${argPrefix(args)}${step.exec ? argv.join(' ') : `${shell.join(' ')} ${step.script ?? ''}`}`;
  return filesystemStep(description, current, ctx, { created, created_by: createdBy }, true, async (paths) => {
    options.progress.running(paths.id);
    const env = [...(run.Env ?? []), ...[...args, ...proxies].map(([k, v]) => `${k}=${v}`)];
    const result = await runInContainer({
      store: options.store,
      runner: options.runner,
      paths,
      argv,
      env,
      user: run.User || undefined,
      workdir: run.WorkingDir || undefined,
      network,
      scriptFile,
      spawnArgs: options.toolArgs,
      onOutput: (stream, chunk) => options.progress.output(stream, chunk),
      signal: options.signal,
    });
    if (result.cancelled) throw new ConveyorError('ERR_BUILD_CANCELLED', 'build cancelled during RUN', { exitCode: cancelExitCode(options.signal!) });
    if (result.exitCode !== 0) {
      throw new ConveyorError(
        'ERR_BUILD_STEP',
        `${options.dockerfile.name}:${step.line}: ${step.original}: exited with code ${result.exitCode}${result.message ? ` (${result.message.replace(/^ctr-spawn: /, '')})` : ''}`,
        { hint: 'the command failed in the build container; its output is above', details: { line: step.line, stepExitCode: result.exitCode } },
      );
    }
  });
}

async function copyStep(step: Extract<Step, { kind: 'COPY' | 'ADD' }>, current: StageResult, ctx: StageContext, created: string): Promise<StageResult> {
  const { options } = ctx;
  const run = runConfigOf(current.state);
  // A relative destination is against WORKDIR; a trailing '/' (a directory) is kept.
  const dest = step.dest.startsWith('/')
    ? step.dest
    : `${posix.join(run.WorkingDir || '/', step.dest)}${step.dest.endsWith('/') || step.dest === '.' ? '/' : ''}`;
  const chmod = step.chmod === undefined ? undefined : parseChmod(step.chmod, options, step.line);

  // Where the sources come from: the context, an earlier stage, or an image.
  let sourceKey: string;
  let sourceState: BuildState | undefined;
  let sourceRef = '';
  if (step.from !== undefined) {
    const stage = stageNamed(ctx.stages, step.from, ctx.stages.length);
    const built = stage ? ctx.results.get(stage.index) : undefined;
    // Built stages come before this one; a stage not built yet is this one or a later one (Docker refuses both).
    if (stage && !built) throw parseFailure(options, step.line, `COPY --from=${step.from}: the stage is not defined before this one`);
    if (stage && built) {
      sourceState = built.state;
      sourceKey = built.key;
      sourceRef = built.ref;
    } else {
      const image = await baseImage(step.from, baseImageOptions(options), `COPY --from=${step.from}`);
      sourceState = imageState(image.config, image.manifest.layers);
      sourceKey = image.record.digest;
      sourceRef = image.record.ref;
    }
  } else {
    const base: CopyOptions = {
      rootfs: '',
      dest,
      sources: step.sources,
      from: contextSource(options),
      heredocs: step.heredocs,
      add: step.kind === 'ADD',
      ...(step.checksum ? { checksum: step.checksum } : {}),
    };
    // Hashing only (digest.ts): the copy code loads when the step runs.
    const { sourcesDigest } = await import('./copy/digest.js');
    // Unchanged files (by stat) are not read again; --no-cache hashes every file.
    const hashCache = options.noCache ? undefined : await (await import('./copy/hash-cache.js')).openHashCache(options.store, options.context.dir);
    sourceKey = await sourcesDigest({ ...base, ...(hashCache ? { hashCache } : {}) }).catch((error) => {
      throw withLine(error, options, step.line);
    });
    await hashCache?.save();
  }
  const description = {
    kind: step.kind,
    sources: step.sources,
    dest,
    from: sourceKey,
    chown: step.chown ?? null,
    chmod: chmod ?? null,
    heredocs: step.heredocs,
    checksum: step.checksum ?? null,
    ignore: step.from === undefined ? options.context.ignorePatterns : [],
  };
  const shown = step.from === undefined ? sourceKey : `from ${step.from}`;
  const history = { created, created_by: `/bin/sh -c #(nop) ${step.kind} ${shown} in ${dest} ` };
  return filesystemStep(description, current, ctx, history, true, async (paths) => {
    let sourcePaths: ContainerPaths | undefined;
    try {
      let from: CopyOptions['from'];
      if (sourceState) {
        sourcePaths = await mountStage(sourceState, layerOptions(ctx, sourceRef));
        // Another stage's or an image's files keep their owners (COPY --from), the context's become 0:0.
        from = { root: sourcePaths.merged, trusted: false, keepOwners: true };
      } else {
        from = { root: options.context.dir, trusted: false, ignore: options.context.ignore };
      }
      const { copyInto, resolveOwner } = await import('./copy/index.js');
      let chown = step.chown === undefined ? undefined : await resolveOwner(paths.merged, step.chown);
      if (chown && !(await (await import('./copy/mapped.js')).ownerMapped(chown))) {
        // Rootless with a single mapping (no subordinate ids): only 0 exists here (docs/rootless.md).
        options.warn(
          `${options.dockerfile.name}:${step.line}: --chown=${step.chown} (${chown.uid}:${chown.gid}) is not mapped in this user namespace (no subordinate ids in /etc/subuid, /etc/subgid): the files stay owned by 0:0`,
        );
        chown = undefined;
      }
      await copyInto({
        rootfs: paths.merged,
        dest,
        sources: step.sources,
        from,
        heredocs: step.heredocs,
        add: step.kind === 'ADD',
        ...(chown ? { chown } : {}),
        ...(chmod !== undefined ? { chmod } : {}),
        ...(step.checksum ? { checksum: step.checksum } : {}),
      }).catch((error) => {
        throw withLine(error, options, step.line);
      });
    } finally {
      if (sourcePaths) await removeContainer(options.store, sourcePaths.id);
    }
  });
}

function contextSource(options: BuildOptions): CopyOptions['from'] {
  const { context } = options;
  return {
    root: context.dir,
    trusted: false,
    ...(context.ignore ? { ignore: context.ignore } : {}),
    ...(context.mayIncludeUnder ? { mayIncludeUnder: context.mayIncludeUnder } : {}),
    ...(context.sameBelow ? { sameBelow: context.sameBelow } : {}),
  };
}

function parseChmod(value: string, options: BuildOptions, line: number): number {
  if (!/^[0-7]{3,4}$/.test(value)) throw parseFailure(options, line, `--chmod=${value}: not an octal mode`, 'give octal digits, e.g. --chmod=0755');
  return parseInt(value, 8);
}
