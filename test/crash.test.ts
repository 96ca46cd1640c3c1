/**
 * Crash consistency of every writer of the store (issue 16): img-fetch,
 * layer-unpack, img-push, img-import, img-prune and img-build are killed with
 * SIGKILL at random points (a seeded delay across the writer's measured
 * duration, or a phase seen in its output or on the wire), many runs each.
 * After every kill: img-fsck finds no damage (garbage is allowed: partial
 * downloads, staging dirs, temp files, orphans; the harness's own check
 * stands in while img-fsck is not built), img-ls and img-inspect agree, and
 * the same command run again completes with the same result a run that was
 * never killed gives (same digests, same unpacked trees, the pushed image
 * pulls back whole). After that run the garbage left is counted per writer
 * (printed at the end), img-prune collects it, and img-fsck must be clean
 * with nothing left that no tool would ever collect.
 *
 * CONVEYOR_CRASH_RUNS=N raises the runs per writer for a soak;
 * CONVEYOR_CRASH_SEED=S replays the kill points a failure printed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { crashRun, crashRuns, crashSeed, seededRandom, startThrottleProxy, storeProblems, strayFiles, timeRun } from './helpers/crash.js';
import { busyboxLayout, importToStore } from './helpers/fixtures.js';
import { pushImage, startRegistry, type TestRegistry } from './helpers/registry.js';
import { removeStore, tempStore } from './helpers/rootfs.js';
import { jsonLines, runTool, runToolSync } from './helpers/tools.js';
import { deleteAllContainers } from './helpers/containers.js';

const BUSYBOX = 'docker.io/library/busybox';
const seed = crashSeed();
t.comment(`crash seed ${seed} (CONVEYOR_CRASH_SEED=${seed} replays these kill points)`);

const stores: string[] = [];
/** A fresh store, removed (with anything mounted below it) at the end. */
function newStore(): string {
  const root = tempStore('conveyor-crash-');
  stores.push(root);
  return root;
}
/** A fresh store holding a copy of `template`'s content. */
function copyStore(template: string): string {
  const root = newStore();
  // cp -a, not fs.cpSync: unpacked layers keep their owners, xattrs and device nodes.
  execFileSync('cp', ['-a', `${template}/.`, root]);
  return root;
}
/** Removes the stores made since `mark` (stores.length then): each run cleans up after itself, so a soak does not fill the disk. */
async function releaseStores(mark = 0): Promise<void> {
  for (const root of stores.splice(mark)) {
    await deleteAllContainers(root).catch(() => undefined);
    removeStore(root);
  }
}
t.teardown(() => releaseStores());

/** `tool --root ROOT ARGS`, synchronously (its result; a non-zero exit is not thrown). */
function tool(name: string, root: string, args: string[], input?: string) {
  return runToolSync(name, ['--root', root, ...args], { input, timeoutMs: 120_000 });
}

/** Checks that a run exited 0, showing the end of its stderr only when it did not. */
function completes(t: Tap.Test, run: { code: number | null; stderr: string }, message: string): void {
  t.equal(run.code, 0, message);
  if (run.code !== 0) t.comment(run.stderr.slice(-1500));
}

/** A description of a tree to compare unpacked layers by: path, type, mode, size, link target. */
function treeOf(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const path = join(rel, name);
      const info = lstatSync(join(dir, path));
      const kind = info.isDirectory() ? 'd' : info.isSymbolicLink() ? `l>${readlinkSync(join(dir, path))}` : info.isFile() ? `f${info.size}` : `o${info.rdev}`;
      out.push(`${path} ${kind} ${(info.mode & 0o7777).toString(8)} ${info.uid}:${info.gid}`);
      if (info.isDirectory()) walk(path);
    }
  };
  walk('');
  return out;
}

/** The trees of every complete layer (`layers/<hex>/` with meta.json), by chain hex. */
function layerTrees(root: string): Map<string, string[]> {
  const trees = new Map<string, string[]>();
  const dir = join(root, 'layers');
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    if (/^[0-9a-f]{64}$/.test(name) && existsSync(join(dir, name, 'meta.json'))) trees.set(name, treeOf(join(dir, name, 'diff')));
  }
  return trees;
}

/** Mount points below the store (a killed build leaves its running step's overlay mounted). */
function mountsBelow(root: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((path) => path?.startsWith(`${root}/`));
}

/** Whether img-fsck is built (R1): until then the harness's own check stands alone. */
const haveFsck = (() => {
  const run = runToolSync('img-fsck', ['--help']);
  return run.code === 0 && !/not built yet/i.test(run.stdout + run.stderr);
})();
t.comment(haveFsck ? 'checking stores with img-fsck and the harness check' : 'img-fsck not built: checking stores with the harness check only');

/** img-fsck's codes for garbage (what img-prune collects), as opposed to damage. */
const GARBAGE = /^FSCK_(LEFTOVER|ORPHAN)_/;

/**
 * What img-fsck finds wrong with the store, but garbage, and how much garbage it found. Until
 * img-fsck is built the harness's own check stands in (it ignores garbage).
 */
async function fsckProblems(root: string): Promise<{ problems: string[]; garbage: string[] }> {
  if (!haveFsck) return { problems: await storeProblems(root), garbage: [] };
  const run = await runTool('img-fsck', ['--root', root], { timeoutMs: 120_000 });
  const found = run.records.filter((r) => r.type === 'problem');
  const problems = found.filter((r) => !GARBAGE.test(r.code)).map((r) => `${r.code} ${r.path}: ${r.message}`);
  if (run.code !== 0 && found.length === 0) problems.push(`img-fsck exited ${run.code}: ${run.stderr.slice(0, 500)}`);
  if (run.code === 0 && found.length > 0 && found.some((r) => !r.repaired)) problems.push('img-fsck exited 0 with problems');
  return { problems, garbage: found.filter((r) => GARBAGE.test(r.code)).map((r) => `${r.code} ${r.path}`) };
}

/**
 * What must hold of a store right after a kill: img-fsck finds no damage (garbage a later run
 * or img-prune collects is allowed: ingest/ partials, staging dirs, temp files, orphans), and
 * img-ls and img-inspect describe the same images. Returns the problems (none: clean).
 */
async function afterKill(root: string): Promise<string[]> {
  const [{ problems }, agree] = await Promise.all([fsckProblems(root), lsInspectAgree(root)]);
  return [...problems, ...agree];
}

/** Garbage the next run left behind, per writer (img-prune collected it): for the report. */
const leftovers = new Map<string, string[]>();

/**
 * What must hold once the next run completed: no damage, img-ls and img-inspect agree, and after
 * img-prune collects what garbage the killed run left (counted per writer), img-fsck exits 0.
 */
async function afterRun(root: string, writer: string): Promise<string[]> {
  const [{ problems, garbage }, agree] = await Promise.all([fsckProblems(root), lsInspectAgree(root)]);
  const stray = strayFiles(root);
  if (garbage.length > 0 || stray.length > 0) {
    const found = [...garbage, ...stray.filter((path) => !garbage.some((g) => g.endsWith(` ${path}`))).map((path) => `(not found by img-fsck) ${path}`)];
    leftovers.set(writer, [
      ...(leftovers.get(writer) ?? []),
      ...found.map((g) =>
        g
          .replace(/\.\d+\.[0-9a-f]+\.tmp$/, '.PID.RAND.tmp')
          .replace(/-\d+\.\d+\.[0-9a-f]+/, '-TOKEN')
          .replace(/[0-9a-f]{12,}/g, '…'),
      ),
    ]);
    const prune = await runTool('img-prune', ['--root', root]);
    if (prune.code !== 0) problems.push(`img-prune exited ${prune.code}: ${prune.stderr.slice(0, 500)}`);
    const again = await runTool('img-fsck', ['--root', root], { timeoutMs: 120_000 });
    if (again.code !== 0) problems.push(`img-fsck after img-prune exited ${again.code}: ${again.stdout.slice(0, 800)}`);
    for (const path of strayFiles(root)) problems.push(`${path}: left by a dead writer, img-prune does not collect it`);
  }
  return [...problems, ...agree];
}

/** img-ls lists every image img-inspect can describe whole, by the same digest. */
async function lsInspectAgree(root: string): Promise<string[]> {
  const listed = await runTool('img-ls', ['--root', root, '--json']);
  if (listed.code !== 0) return [`img-ls exited ${listed.code}: ${listed.stderr}`];
  if (listed.records.length === 0) return [];
  const problems: string[] = [];
  const inspected = await runTool('img-inspect', ['--root', root, '--json'], { input: listed.stdout });
  if (inspected.code !== 0) problems.push(`img-inspect exited ${inspected.code}: ${inspected.stderr}`);
  const seen = new Map(inspected.records.map((r) => [r.ref, r.digest]));
  for (const image of listed.records) {
    if (seen.get(image.ref) !== image.digest) problems.push(`img-ls lists ${image.ref} as ${image.digest}, img-inspect as ${seen.get(image.ref)}`);
  }
  return problems;
}

/** The time a tool takes to start and exit doing nothing: kills before it are wasted. */
const startupMs = (() => {
  const started = Date.now();
  runToolSync('img-ls', ['--version']);
  return Date.now() - started;
})();

/** The progress events (--progress=json) a writer printed on stderr so far. */
const progressEvents = (stderr: string) => stderr.match(/"type":"progress"/g)?.length ?? 0;

/**
 * Where to kill run `i` of a writer whose uninterrupted run took `full`: odd runs at its k-th
 * progress event (k drawn from `rng` among those that run printed: a phase, whatever the load),
 * even runs after a delay drawn across its duration (anywhere, between the events too).
 */
function killPoint(
  i: number,
  rng: () => number,
  full: { ms: number; stderr: string },
): { killAfterMs?: number; killWhen?: (o: { stderr: string }) => boolean } {
  const events = progressEvents(full.stderr);
  if (i % 2 === 1 && events > 1) {
    const k = 1 + Math.floor(rng() * (events - 1));
    return { killWhen: ({ stderr }) => progressEvents(stderr) >= k };
  }
  return { killAfterMs: delayIn(rng, full.ms) };
}

/** A kill delay drawn from `rng` between start-up and the writer's measured duration. */
const delayIn = (rng: () => number, fullMs: number) => Math.round(startupMs * 0.7 + rng() * Math.max(fullMs * 0.8 - startupMs * 0.7, 20));

interface Tally {
  runs: number;
  killed: number;
  /** Where the kills landed, by the writer's last progress line or output record. */
  phases: Map<string, number>;
}
const tallies = new Map<string, Tally>();
function tally(writer: string, crash: { killed: boolean; stdout: string; stderr: string }) {
  const entry = tallies.get(writer) ?? { runs: 0, killed: 0, phases: new Map() };
  entry.runs++;
  if (crash.killed) {
    entry.killed++;
    const phase = killPhase(crash);
    entry.phases.set(phase, (entry.phases.get(phase) ?? 0) + 1);
  }
  tallies.set(writer, entry);
}
/** The last progress event on stderr (--progress=json), else the count of records out, as a phase name. */
function killPhase(crash: { stdout: string; stderr: string }): string {
  const events = jsonLines(crash.stderr).filter((l) => l.type === 'progress');
  const last = events.at(-1);
  if (last) return `${last.action} ${last.phase}${last.action === 'step' ? ` ${String(last.label).split(' ')[0]}` : ''}`;
  const records = jsonLines(crash.stdout).length;
  return records ? `after ${records} records out` : 'before any output';
}
t.teardown(() => {
  for (const [writer, { runs, killed, phases }] of tallies) {
    const where = [...phases].map(([phase, n]) => `${phase}: ${n}`).join(', ');
    t.comment(`${writer}: ${runs} runs, ${killed} killed mid-run by SIGKILL (${where})`);
    const left = leftovers.get(writer) ?? [];
    const kinds = new Map<string, number>();
    for (const item of left) kinds.set(item, (kinds.get(item) ?? 0) + 1);
    t.comment(
      `${writer}: garbage left after the next run (img-prune collected it): ${left.length ? [...kinds].map(([k, n]) => `${k} x${n}`).join(', ') : 'none'}`,
    );
  }
});

let registry: TestRegistry;
/** busybox:v2 (two layers) in the registry as crash/bb:v2, and in a template store. */
let template: string;
let v2Digest: string;
t.before(async () => {
  registry = await startRegistry();
  await pushImage(`${busyboxLayout()}:v2`, registry, 'crash/bb:v2');
  template = newStore();
  importToStore(`${busyboxLayout()}:v2`, template, `${BUSYBOX}:v2`);
  importToStore(`${busyboxLayout()}:latest`, template, `${BUSYBOX}:latest`);
  v2Digest = tool('img-ls', template, ['--json', `${BUSYBOX}:v2`]).records[0].digest;
});
t.teardown(() => registry?.stop());

t.test('img-fetch killed mid-pull', async (t) => {
  // ~1 MiB/s: the 1.1 MB layer takes about a second, so kills land inside it.
  const proxy = await startThrottleProxy(registry.url, 1024 * 1024);
  t.teardown(() => proxy.stop());
  const ref = `${proxy.host}/crash/bb:v2`;
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
  const args = (root: string) => ['--root', root, '--log-format=json', '--progress=json', ref];
  const full = await timeRun('img-fetch', args(newStore()), { env });
  completes(t, full, 'a run never killed completes');
  const rng = seededRandom(seed);
  const runs = crashRuns(4);
  for (let i = 0; i < runs; i++) {
    const mark = stores.length;
    const root = newStore();
    const layerGets = () => proxy.requests.filter((r) => /^GET \/v2\/crash\/bb\/blobs\//.test(r)).length;
    const before = layerGets();
    // Odd runs: a random moment after the first blob GET went out (mid-blob); even: a random delay.
    const after = rng() * 900;
    let seenAt = 0;
    const crash =
      i % 2
        ? await crashRun('img-fetch', args(root), {
            env,
            killWhen: () => {
              if (!seenAt && layerGets() > before) seenAt = Date.now();
              return seenAt > 0 && Date.now() - seenAt >= after;
            },
          })
        : await crashRun('img-fetch', args(root), { env, killAfterMs: delayIn(rng, full.ms) });
    tally('img-fetch', crash);
    t.strictSame(await afterKill(root), [], `run ${i}: killed at ${crash.ms} ms: the store checks clean`);
    const again = await timeRun('img-fetch', args(root), { env });
    completes(t, again, `run ${i}: the next pull completes`);
    t.equal(again.records.find((r) => r.type === 'image')?.digest, v2Digest, `run ${i}: the same image`);
    t.strictSame(await afterRun(root, 'img-fetch'), [], `run ${i}: clean after the next pull`);
    await releaseStores(mark);
  }
});

t.test('layer-unpack killed mid-layer and mid-chain', async (t) => {
  // Without img-ls's `store` field, so the record names no store and --root decides.
  const input = tool('img-ls', template, ['--json', `${BUSYBOX}:v2`])
    .records.map(({ store: _store, ...record }) => `${JSON.stringify(record)}\n`)
    .join('');
  const reference = copyStore(template);
  const full = await timeRun('layer-unpack', ['--root', reference, '--progress=json'], { input });
  completes(t, full, 'a run never killed completes');
  const expected = layerTrees(reference);
  t.equal(expected.size, 2, 'two layers unpacked');
  const rng = seededRandom(seed + 1);
  const runs = crashRuns(6);
  for (let i = 0; i < runs; i++) {
    const mark = stores.length;
    const root = copyStore(template);
    const crash = await crashRun('layer-unpack', ['--root', root, '--progress=json'], { input, ...killPoint(i, rng, full) });
    tally('layer-unpack', crash);
    t.strictSame(await afterKill(root), [], `run ${i}: killed at ${crash.ms} ms: the store checks clean`);
    // A layer marked complete (meta.json) must be whole.
    for (const [hex, tree] of layerTrees(root)) t.strictSame(tree, expected.get(hex), `run ${i}: layer ${hex.slice(0, 12)} is whole`);
    const again = await timeRun('layer-unpack', ['--root', root], { input });
    completes(t, again, `run ${i}: the next unpack completes`);
    t.equal(again.records[0]?.type, 'rootfs');
    t.strictSame(layerTrees(root), expected, `run ${i}: both layers whole`);
    t.strictSame(
      readdirSync(join(root, 'layers')).filter((n) => n.startsWith('.')),
      [],
      `run ${i}: no staging left`,
    );
    t.strictSame(await afterRun(root, 'layer-unpack'), [], `run ${i}: clean after the next unpack`);
    await releaseStores(mark);
  }
});

t.test('img-push killed mid-upload', async (t) => {
  // ~1 MiB/s up: the layer upload takes about a second.
  const proxy = await startThrottleProxy(registry.url, 1024 * 1024);
  t.teardown(() => proxy.stop());
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config' };
  const push = (root: string, repo: string) => [
    '--root',
    root,
    '--log-format=json',
    '--progress=json',
    '--chunk-size',
    '256k',
    '--to',
    `${proxy.host}/${repo}:v2`,
    `${BUSYBOX}:v2`,
  ];
  const full = await timeRun('img-push', push(copyStore(template), 'crash/push-full'), { env });
  completes(t, full, 'a run never killed completes');
  const rng = seededRandom(seed + 2);
  const runs = crashRuns(4);
  for (let i = 0; i < runs; i++) {
    const mark = stores.length;
    // A fresh store and repository each run: nothing to skip or mount, every blob goes up.
    const root = copyStore(template);
    const repo = `crash/push${i}`;
    const uploads = () => proxy.requests.filter((r) => r.startsWith(`PATCH /v2/${repo}/`) || r.startsWith(`PUT /v2/${repo}/blobs/`)).length;
    const after = rng() * 800;
    let seenAt = 0;
    const crash =
      i % 2
        ? await crashRun('img-push', push(root, repo), {
            env,
            killWhen: () => {
              if (!seenAt && uploads() > 0) seenAt = Date.now();
              return seenAt > 0 && Date.now() - seenAt >= after;
            },
          })
        : await crashRun('img-push', push(root, repo), { env, killAfterMs: delayIn(rng, full.ms) });
    tally('img-push', crash);
    t.strictSame(await afterKill(root), [], `run ${i}: killed at ${crash.ms} ms: the store checks clean`);
    const again = await timeRun('img-push', push(root, repo), { env });
    completes(t, again, `run ${i}: the next push completes`);
    t.equal(again.records[0]?.digest, v2Digest, `run ${i}: pushed as the stored digest`);
    // A fresh pull, straight from the registry: the manifest and every blob verify.
    const pulled = newStore();
    const fetch = runToolSync('img-fetch', ['--root', pulled, `${registry.host}/${repo}:v2`], { env, timeoutMs: 60_000 });
    completes(t, fetch, `run ${i}: a fresh pull verifies`);
    t.equal(fetch.records.find((r) => r.type === 'image')?.digest, v2Digest, `run ${i}: the registry serves the image`);
    t.strictSame(await afterRun(root, 'img-push'), [], `run ${i}: clean after the next push`);
    await releaseStores(mark);
  }
});

t.test('img-import killed mid-import', async (t) => {
  // A temp dir of our own (not t.testdir: a second run of this file would share it).
  const work = mkdtempSync(join(tmpdir(), 'conveyor-crash-import-'));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const archive = join(work, 'bb.tar');
  execFileSync('skopeo', ['copy', '-q', `oci:${busyboxLayout()}:v2`, `docker-archive:${archive}:busybox:v2`]);
  const ociArchive = join(work, 'bb-oci.tar');
  execFileSync('skopeo', ['copy', '-q', `oci:${busyboxLayout()}:v2`, `oci-archive:${ociArchive}:${BUSYBOX}:v2`]);
  const layout = join(work, 'layout');
  execFileSync('skopeo', ['copy', '-q', `oci:${busyboxLayout()}:v2`, `oci:${layout}:v2`]);
  const configDigest = tool('img-ls', template, ['--json', `${BUSYBOX}:v2`]).records[0].configDescriptor.digest;
  const sources: { name: string; args: string[]; input?: Buffer }[] = [
    { name: 'docker-archive', args: [archive] },
    { name: 'docker-archive on stdin', args: ['-'], input: readFileSync(archive) },
    { name: 'OCI archive', args: [ociArchive] },
    { name: 'OCI layout', args: ['--ref', `${BUSYBOX}:v2`, layout] },
  ];
  const rng = seededRandom(seed + 3);
  const runs = crashRuns(4);
  const fulls = new Map<string, { ms: number; stderr: string }>();
  for (let i = 0; i < runs; i++) {
    const mark = stores.length;
    const source = sources[i % sources.length];
    if (!fulls.has(source.name)) {
      const full = await timeRun('img-import', ['--root', newStore(), '--progress=json', ...source.args], { input: source.input });
      completes(t, full, `${source.name}: a run never killed completes`);
      fulls.set(source.name, full);
    }
    const root = newStore();
    const crash = await crashRun('img-import', ['--root', root, '--progress=json', ...source.args], {
      input: source.input,
      ...killPoint(i + (i >> 2), rng, fulls.get(source.name)!),
    });
    tally('img-import', crash);
    t.strictSame(await afterKill(root), [], `run ${i} (${source.name}): killed at ${crash.ms} ms: the store checks clean`);
    const again = await timeRun('img-import', ['--root', root, ...source.args], { input: source.input });
    completes(t, again, `run ${i}: the next import completes`);
    const listed = tool('img-ls', root, ['--json']).records.map((r) => [r.ref, r.configDescriptor?.digest]);
    t.strictSame(listed, [[`${BUSYBOX}:v2`, configDigest]], `run ${i}: the image is listed, its config whole`);
    t.strictSame(await afterRun(root, 'img-import'), [], `run ${i}: clean after the next import`);
    await releaseStores(mark);
  }
});

t.test('img-prune killed mid-removal', async (t) => {
  // Both images unpacked, then untagged: a prune removes 3 layer dirs, their blobs, configs and manifests.
  const unpacked = copyStore(template);
  const listed = tool('img-ls', unpacked, ['--json']).stdout;
  t.equal(tool('layer-unpack', unpacked, [], listed).code, 0);
  const expected = layerTrees(unpacked);
  // What a prune frees that was never killed, with -a (everything) and without (v2 untagged first: its top layer and blobs).
  const prepare = (all: boolean) => {
    const root = copyStore(unpacked);
    if (!all) completes(t, tool('img-rm', root, [`${BUSYBOX}:v2`]), 'img-rm');
    return root;
  };
  const fulls = new Map<boolean, { ms: number; freed: number }>();
  for (const all of [true, false]) {
    const full = await timeRun('img-prune', ['--root', prepare(all), ...(all ? ['-a'] : [])]);
    completes(t, full, `a run never killed completes (${all ? '-a' : 'v2 untagged'})`);
    fulls.set(all, { ms: full.ms, freed: full.records.filter((r) => r.type === 'freed').length });
  }
  t.ok(fulls.get(true)!.freed >= 8, `a full prune -a frees ${fulls.get(true)!.freed} things`);
  t.ok(fulls.get(false)!.freed >= 1, `a prune of v2 frees ${fulls.get(false)!.freed} things`);
  const rng = seededRandom(seed + 4);
  const runs = crashRuns(6);
  for (let i = 0; i < runs; i++) {
    const mark = stores.length;
    // Even runs remove everything (-a), odd ones keep busybox:latest (v2 untagged: its top layer goes).
    const all = i % 2 === 0;
    const args = all ? ['-a'] : [];
    const root = prepare(all);
    const full = fulls.get(all)!;
    const nth = 1 + Math.floor(rng() * full.freed);
    // Killed after a delay, after the nth freed record, or the moment a layer dir is renamed aside (mid-rm of its tree).
    const kill = [
      { killAfterMs: delayIn(rng, full.ms) },
      { killWhen: ({ stdout }: { stdout: string }) => (stdout.match(/"type":"freed"/g)?.length ?? 0) >= nth },
      { killOnCreate: { dir: join(root, 'layers'), match: /^\.gc-/ } },
    ][i % 3];
    const crash = await crashRun('img-prune', ['--root', root, ...args], kill);
    tally('img-prune', crash);
    t.strictSame(await afterKill(root), [], `run ${i}: killed at ${crash.ms} ms: the store checks clean`);
    for (const [hex, tree] of layerTrees(root)) t.strictSame(tree, expected.get(hex), `run ${i}: layer ${hex.slice(0, 12)} left marked complete is whole`);
    const again = await timeRun('img-prune', ['--root', root, ...args]);
    completes(t, again, `run ${i}: the next prune completes`);
    t.strictSame(await afterRun(root, 'img-prune'), [], `run ${i}: clean after the next prune`);
    const left = tool('img-ls', root, ['--json']).records.map((r) => r.ref);
    t.strictSame(left, all ? [] : [`${BUSYBOX}:latest`], `run ${i}: what stays is what a prune keeps`);
    // What is kept still unpacks (its layer is whole or gone, never half there).
    if (left.length) t.equal(tool('layer-unpack', root, [], tool('img-ls', root, ['--json']).stdout).code, 0, `run ${i}: the kept image unpacks`);
    t.strictSame(
      readdirSync(join(root, 'layers')).filter((n) => n.startsWith('.')),
      [],
      `run ${i}: nothing half-removed left under layers/`,
    );
    await releaseStores(mark);
  }
});

/**
 * Removes what a killed build left: its step containers (dead: no state; the running step's
 * overlay still mounted). ctr-rm removes them by id at once (even runs); ctr-rm --prune takes a
 * stateless dir only once it is a minute old (it may be a ctr-spawn starting), so odd runs age
 * them by a minute first, as a minute's wait would. Garbage is img-prune's (afterRun).
 */
function removeStepContainers(t: Tap.Test, root: string, i: number): void {
  const left = tool('ctr-ls', root, ['-a', '--json']).records.map((r) => r.id);
  if (left.length && i % 2 === 0)
    completes(t, tool('ctr-rm', root, ['-f', ...left]), `run ${i}: ctr-rm removes the killed build's ${left.length} step containers`);
  if (left.length && i % 2 === 1) {
    const aMinuteAgo = new Date(Date.now() - 61_000);
    for (const id of left) utimesSync(join(root, 'containers', id), aMinuteAgo, aMinuteAgo);
    completes(t, tool('ctr-rm', root, ['--prune']), `run ${i}: ctr-rm --prune removes the killed build's ${left.length} step containers`);
  }
  const containers = join(root, 'containers');
  t.strictSame(existsSync(containers) ? readdirSync(containers) : [], [], `run ${i}: no step container left`);
  t.strictSame(mountsBelow(root), [], `run ${i}: no overlay left mounted`);
}

t.test('img-build killed mid-RUN, mid-pack and mid-cache write', async (t) => {
  const context = mkdtempSync(join(tmpdir(), 'conveyor-crash-build-'));
  t.teardown(() => rmSync(context, { recursive: true, force: true }));
  const dockerfile = [
    'FROM busybox',
    'COPY a.txt /a.txt',
    'RUN mkdir /d && for i in $(seq 1 300); do echo $i > /d/$i; done && seq 1 200000 > /nums',
    'RUN cat /a.txt /nums | md5sum > /sum',
    'COPY b.txt /b.txt',
    'CMD ["cat", "/sum"]',
  ];
  writeFileSync(join(context, 'Dockerfile'), `${dockerfile.join('\n')}\n`);
  writeFileSync(join(context, 'a.txt'), 'a\n');
  writeFileSync(join(context, 'b.txt'), 'b\n');
  const env = { ...process.env, SOURCE_DATE_EPOCH: '0' };
  const build = (root: string) => ['--root', root, '--progress=json', '-t', 'crash/built:1', context];
  // The digest a build that is never killed gives.
  const full = await timeRun('img-build', build(copyStore(template)), { env, timeoutMs: 120_000 });
  completes(t, full, 'a run never killed completes');
  const digest = full.records[0]?.digest;
  t.match(digest, /^sha256:/);
  const rng = seededRandom(seed + 5);
  const runs = crashRuns(2);
  for (let i = 0; i < runs; i++) {
    const mark = stores.length;
    const root = copyStore(template);
    const crash = await crashRun('img-build', build(root), { env, ...killPoint(i, rng, full) });
    tally('img-build', crash);
    t.strictSame(await afterKill(root), [], `run ${i}: killed at ${crash.ms} ms: the store checks clean`);
    // The next build reuses what the killed one cached, beside the step containers it left.
    const again = await timeRun('img-build', build(root), { env, timeoutMs: 120_000 });
    completes(t, again, `run ${i}: the next build completes`);
    t.equal(again.records[0]?.digest, digest, `run ${i}: the same image as a build never killed`);
    removeStepContainers(t, root, i);
    t.strictSame(await afterRun(root, 'img-build'), [], `run ${i}: clean after the next build`);
    await releaseStores(mark);
  }
  // Inside a cache entry's atomic write, exactly: killed the moment the k-th entry's temp file appears (inotify).
  for (let i = 0; i < Math.ceil(runs / 3); i++) {
    const mark = stores.length;
    const root = copyStore(template);
    mkdirSync(join(root, 'build-cache'), { mode: 0o700 });
    const nth = 1 + Math.floor(rng() * 4);
    const crash = await crashRun('img-build', build(root), { env, killOnCreate: { dir: join(root, 'build-cache'), match: /\.tmp$/, nth } });
    tally('img-build (in a cache entry write)', crash);
    t.ok(crash.killed, `cache run ${i}: killed writing cache entry ${nth}`);
    t.strictSame(await afterKill(root), [], `cache run ${i}: the store checks clean`);
    const again = await timeRun('img-build', build(root), { env, timeoutMs: 120_000 });
    completes(t, again, `cache run ${i}: the next build completes`);
    t.equal(again.records[0]?.digest, digest, `cache run ${i}: the same image as a build never killed`);
    removeStepContainers(t, root, i);
    t.strictSame(await afterRun(root, 'img-build (in a cache entry write)'), [], `cache run ${i}: clean after the next build`);
    await releaseStores(mark);
  }
});

t.test('writers killed inside an atomic write of index.json', async (t) => {
  // The kill lands the moment the temp file appears (inotify): between Store.writeFileAtomic's open and its rename.
  const indexTemp = /^index\.json\..*\.tmp$/;
  const archive = join(mkdtempSync(join(tmpdir(), 'conveyor-crash-index-')), 'bb.tar');
  t.teardown(() => rmSync(join(archive, '..'), { recursive: true, force: true }));
  execFileSync('skopeo', ['copy', '-q', `oci:${busyboxLayout()}:v2`, `docker-archive:${archive}:busybox:v2`]);
  const cases: { writer: string; prepare: () => string; args: string[]; after: (root: string) => void }[] = [
    {
      writer: 'img-import',
      prepare: () => {
        const root = newStore();
        // index.json exists first, so the import's own write is the one killed (not init's).
        completes(t, tool('img-ls', root, []), 'an empty store');
        return root;
      },
      args: [archive],
      after: (root) =>
        t.strictSame(
          tool('img-ls', root, ['--json']).records.map((r) => r.ref),
          [`${BUSYBOX}:v2`],
          'imported',
        ),
    },
    {
      writer: 'img-prune',
      prepare: () => copyStore(template),
      args: ['-a'],
      after: (root) => t.strictSame(tool('img-ls', root, ['--json']).records, [], 'pruned'),
    },
  ];
  const runs = Math.ceil(crashRuns(4) / 4);
  for (const { writer, prepare, args, after } of cases) {
    for (let i = 0; i < runs; i++) {
      const mark = stores.length;
      const root = prepare();
      const crash = await crashRun(writer, ['--root', root, ...args], { killOnCreate: { dir: root, match: indexTemp } });
      tally(`${writer} (in its index.json write)`, crash);
      t.ok(crash.killed, `${writer} run ${i}: killed in its index.json write`);
      t.strictSame(await afterKill(root), [], `${writer} run ${i}: the store checks clean`);
      const again = await timeRun(writer, ['--root', root, ...args]);
      completes(t, again, `${writer} run ${i}: the next run completes`);
      after(root);
      t.strictSame(await afterRun(root, `${writer} (in its index.json write)`), [], `${writer} run ${i}: clean after the next run`);
      await releaseStores(mark);
    }
  }
});
