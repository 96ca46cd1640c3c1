/**
 * Load (issue 16): the tools at once, many times, on one store of this 2-core
 * machine, against a real registry (docker-registry, its access log counting
 * the GETs of each blob).
 *
 * - 50 concurrent conveyor-run of one image into an empty store: each prints
 *   its own line and its own hostname (the first 12 hex of its container id),
 *   each blob is downloaded once, and afterwards nothing of any of them is
 *   left: no mount under the store, no cgroup, no runc state, no container
 *   directory, no process (pasta, a tool) naming the store.
 * - 50 concurrent ctr-spawn -d (10 with a published port), then 10
 *   concurrent ctr-rm -f of 5 each: every container ran with its own name and port,
 *   and afterwards nothing is left (the supervisors, pasta and relays
 *   recorded while they ran are gone).
 * - 20 concurrent img-fetch of five overlapping references (tags sharing
 *   layers, one image under two repositories) while the ingest lock of one
 *   layer is held by a process that was SIGKILLed: every blob GET once, every
 *   blob hashes to its name; then 20 concurrent layer-unpack of the results:
 *   each layer unpacked by exactly one of them, the others reuse it.
 */
import t from 'tap';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTime } from '../lib-common/dist/lock.js';
import { busyboxLayout, REPO_ROOT, SHARED_IMAGES } from './helpers/fixtures.js';
import { pushImage, startRegistry } from './helpers/registry.js';
import { busyboxRootfs, removeStore, tempStore } from './helpers/rootfs.js';
import { importToStore } from './helpers/fixtures.js';
import { deleteAllContainers, RUNTIME_ROOT } from './helpers/containers.js';
import { runTool } from './helpers/tools.js';

const exec = promisify(execFile);
const RUNS = 50;
const PULLS = 20;

const registry = await startRegistry();
t.teardown(() => registry.stop());
await Promise.all([
  pushImage(`${busyboxLayout()}:latest`, registry, 'load/busybox:latest'),
  pushImage(`${busyboxLayout()}:latest`, registry, 'bb:latest'),
  pushImage(`${busyboxLayout()}:v2`, registry, 'bb:v2'),
  pushImage(`${busyboxLayout()}:cfg`, registry, 'bb:cfg'),
  pushImage(`${busyboxLayout()}:v2`, registry, 'mirror/bb:v2'),
  pushImage(`${SHARED_IMAGES}/busybox:latest`, registry, 'other/busybox:latest'),
]);

/** A fresh store, its containers and mounts removed after the test. */
function storeFor(t: Tap.Test, prefix: string): string {
  const root = tempStore(prefix);
  t.teardown(async () => {
    await deleteAllContainers(root);
    removeStore(root);
  });
  return root;
}

/** Digests (sha256:…) of every blob in the store, each checked to hash to its name. */
function verifiedBlobs(t: Tap.Test, root: string): string[] {
  const dir = join(root, 'blobs', 'sha256');
  const names = readdirSync(dir);
  const bad = names.filter(
    (hex) =>
      createHash('sha256')
        .update(readFileSync(join(dir, hex)))
        .digest('hex') !== hex,
  );
  t.strictSame(bad, [], `all ${names.length} blobs hash to their names`);
  return names.map((hex) => `sha256:${hex}`);
}

/** The digests the registry served more (or less) than once since its log was `since` long, with their counts. */
function notOnce(digests: string[], since: number): Record<string, number> {
  const lines = registry.logs().slice(since).split('\n');
  const counts: Record<string, number> = {};
  for (const digest of digests) {
    const gets = lines.filter((l) => l.includes('"GET /v2/') && l.includes(`/blobs/${digest} `)).length;
    if (gets !== 1) counts[digest] = gets;
  }
  return counts;
}

/** The store's blobs that are not manifests (those come from /manifests/, not /blobs/). */
function blobDigests(root: string, all: string[]): string[] {
  const manifests = new Set<string>();
  for (const digest of all) {
    const text = readFileSync(join(root, 'blobs', 'sha256', digest.slice(7)), 'utf8');
    if (text.startsWith('{') && /"(layers|manifests)"\s*:/.test(text)) manifests.add(digest);
  }
  return all.filter((digest) => !manifests.has(digest));
}

/**
 * Whatever of the store is still on the host: mounts under it, cgroups and
 * runc state of containers whose ids start with `ids` (full ids or 12-hex
 * prefixes), entries of containers/, names, and processes whose command
 * line, working directory or open files are under the store.
 */
function leftovers(root: string, ids: string[]): string[] {
  const found: string[] = [];
  const ours = (name: string) => ids.some((id) => name.startsWith(id));
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4];
    if (point?.startsWith(`${root}/`)) found.push(`mount ${point}`);
  }
  for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
    const parent = join('/sys/fs/cgroup', hierarchy, 'conveyor');
    if (!existsSync(parent)) continue;
    for (const entry of readdirSync(parent)) if (ours(entry)) found.push(`cgroup ${join(parent, entry)}`);
  }
  const listed = execFileSync('runc', ['--root', RUNTIME_ROOT, 'list', '-q'], { encoding: 'utf8' }).split('\n');
  for (const id of listed) if (id && ours(id)) found.push(`runc state ${id}`);
  if (existsSync(RUNTIME_ROOT)) for (const id of readdirSync(RUNTIME_ROOT)) if (ours(id)) found.push(`runc dir ${id}`);
  for (const dir of ['containers', 'names']) {
    if (existsSync(join(root, dir))) for (const entry of readdirSync(join(root, dir))) found.push(`${dir}/${entry}`);
  }
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      let refs = cmdline.includes(root) || readlinkSync(`/proc/${pid}/cwd`).startsWith(root);
      for (const fd of refs ? [] : readdirSync(`/proc/${pid}/fd`)) {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(root)) refs = true;
      }
      if (refs) found.push(`process ${pid} ${cmdline}`);
    } catch {
      // gone, or a kernel thread
    }
  }
  return found;
}

/** A process by pid and start time, and what it was. */
interface Identity {
  what: string;
  pid: number;
  startTime?: string;
}

/** The supervisor, network helper, relays and init of detached container `id`, read while it runs. */
function processesOf(root: string, id: string): Identity[] {
  const dir = join(root, 'containers', id);
  const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  const found: Identity[] = [{ what: `init of ${id}`, pid: state.pid, startTime: state.pidStartTime }];
  if (state.supervisor) found.push({ what: `supervisor of ${id}`, ...state.supervisor });
  if (existsSync(join(dir, 'network.json'))) {
    const helper = JSON.parse(readFileSync(join(dir, 'network.json'), 'utf8'));
    found.push({ what: `${helper.name} of ${id}`, pid: helper.pid, startTime: helper.startTime });
  }
  // The relay of its published ports is the supervisor's child (nsenter, then node).
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === state.supervisor?.pid) found.push({ what: `child of the supervisor of ${id}`, pid: Number(pid), startTime: startTime(Number(pid)) });
    } catch {
      // gone
    }
  }
  return found;
}

function alive(identity: Identity): boolean {
  const now = startTime(identity.pid);
  return now !== undefined && (identity.startTime === undefined || now === identity.startTime);
}

/** img-fsck of the store: clean (exit 0, no problem record). */
async function fsckClean(t: Tap.Test, root: string): Promise<void> {
  const fsck = await runTool('img-fsck', ['--root', root, '--progress=none']);
  t.strictSame(
    fsck.records.filter((r) => r.type === 'problem'),
    [],
    'img-fsck finds no problem',
  );
  t.equal(fsck.code, 0, `img-fsck exits 0 ${fsck.stderr}`);
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function conveyorRun(args: string[]): Promise<RunResult> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [join(REPO_ROOT, 'scripts', 'run.mjs'), ...args], { timeout: 300_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

t.test(`${RUNS} concurrent conveyor-run of one image: each its own output, each blob pulled once, nothing left`, async (t) => {
  const root = storeFor(t, 'conveyor-load-run-');
  const image = `${registry.host}/load/busybox:latest`;
  const logged = registry.logs().length;
  const started = Date.now();
  const runs = await Promise.all(Array.from({ length: RUNS }, (_, i) => conveyorRun(['--root', root, '-q', image, 'sh', '-c', `echo run-${i} $(hostname)`])));
  t.comment(`${RUNS} conveyor-run: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const hostnames: string[] = [];
  const failed: string[] = [];
  for (const [i, run] of runs.entries()) {
    const match = new RegExp(`^run-${i} ([0-9a-f]{12})\\n$`).exec(run.stdout);
    if (run.code !== 0 || !match) failed.push(`run ${i}: exit ${run.code}, stdout ${JSON.stringify(run.stdout)}, stderr ${run.stderr}`);
    else hostnames.push(match[1]);
  }
  t.strictSame(failed, [], `all ${RUNS} runs exit 0 with their own line`);
  t.equal(new Set(hostnames).size, hostnames.length, 'each ran in a container of its own (hostnames are container ids)');
  const blobs = verifiedBlobs(t, root);
  t.strictSame(notOnce(blobDigests(root, blobs), logged), {}, 'the registry served each blob once to the 50 concurrent pulls');
  t.strictSame(leftovers(root, hostnames), [], 'no mount, cgroup, runc state, container directory or process left');
  await fsckClean(t, root);
});

t.test(`${RUNS} concurrent ctr-spawn -d, then concurrent ctr-rm -f of all: nothing left`, async (t) => {
  const root = storeFor(t, 'conveyor-load-detached-');
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  const rootfs = JSON.stringify(busyboxRootfs(root)) + '\n';
  const started = Date.now();
  const spawns = await Promise.all(
    Array.from({ length: RUNS }, (_, i) => {
      const ports = i % 5 === 0 ? ['-p', '127.0.0.1::80'] : [];
      return runTool('ctr-spawn', ['--root', root, '-d', '--name', `load-${i}`, ...ports, '--', 'sleep', '600'], { input: rootfs });
    }),
  );
  t.comment(`${RUNS} ctr-spawn -d: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const records = spawns.map((run) => run.records.find((r) => r.type === 'container'));
  const failed = spawns.flatMap((run, i) => (run.code === 0 && records[i]?.status === 'running' ? [] : [`load-${i}: exit ${run.code} ${run.stderr}`]));
  t.strictSame(failed, [], `all ${RUNS} started`);
  const ids = records.flatMap((r) => (r ? [r.id as string] : []));
  t.strictSame(
    records.map((r) => r?.name),
    records.map((_, i) => `load-${i}`),
    'each has the name it was given',
  );
  const hostPorts = records.flatMap((r) => (r?.ports ?? []).map((p: { hostPort: number }) => p.hostPort));
  t.equal(hostPorts.length, RUNS / 5, 'every fifth container published its port');
  t.equal(new Set(hostPorts).size, hostPorts.length, 'on host ports of its own');
  const processes = ids.flatMap((id) => processesOf(root, id));
  t.ok(processes.length >= RUNS * 3, `${processes.length} processes serve them (init, supervisor, pasta, relays)`);

  // The check can fail: while they run it finds each kind of thing it looks for.
  const running = leftovers(root, ids);
  const kinds = ['mount', 'cgroup', 'runc state', 'runc dir', 'containers/', 'names/', 'process'];
  t.strictSame(
    kinds.filter((kind) => !running.some((found) => found.startsWith(kind))),
    [],
    `while they run, the leftover check sees their mounts, cgroups, runc state, directories, names and processes (${running.length} things)`,
  );

  const removing = Date.now();
  // Ten ctr-rm -f at once, five containers each (by id, or by name every other one): removals race each
  // other and the supervisors that see their containers die, with a tenth of the node start-ups.
  const batches = Array.from({ length: Math.ceil(ids.length / 5) }, (_, b) => records.slice(b * 5, b * 5 + 5).map((r) => (b % 2 ? r!.name : r!.id) as string));
  const removals = await Promise.all(batches.map((batch) => runTool('ctr-rm', ['--root', root, '-f', ...batch])));
  t.comment(`${batches.length} ctr-rm -f of ${ids.length} containers: ${((Date.now() - removing) / 1000).toFixed(1)} s`);
  const refused = removals.flatMap((run, b) =>
    run.code === 0 && run.records.filter((r) => r.type === 'removed').length === batches[b].length
      ? []
      : [`${batches[b].join(' ')}: exit ${run.code} ${run.stderr}`],
  );
  t.strictSame(refused, [], 'every ctr-rm -f removed its container');
  t.strictSame(leftovers(root, ids), [], 'no mount, cgroup, runc state, container directory, name or process left');
  // A supervisor ends after the removal has killed its container: give it a moment.
  for (let i = 0; i < 100 && processes.some(alive); i++) await new Promise((resolve) => setTimeout(resolve, 100));
  t.strictSame(
    processes.filter(alive).map((p) => p.what),
    [],
    'every supervisor, pasta, relay and init that served them is gone',
  );
});

t.test(`${PULLS} concurrent img-fetch of overlapping images: each blob downloaded once; ${PULLS} layer-unpack: each layer unpacked once`, async (t) => {
  const root = storeFor(t, 'conveyor-load-pull-');
  const refs = ['bb:latest', 'bb:v2', 'bb:cfg', 'mirror/bb:v2', 'other/busybox:latest'].map((ref) => `${registry.host}/${ref}`);
  // A pull SIGKILLed while it held the lock of the layer all the bb images share (lock.ts names the holder by pid and start time).
  const layout = busyboxLayout();
  const top = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')).manifests.find(
    (m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === 'latest',
  );
  const shared = JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', top.digest.slice(7)), 'utf8')).layers[0].digest as string;
  const lockPath = join(root, 'locks', `ingest-${shared.slice(7)}.lock`);
  const holder = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { acquireLock } = await import(${JSON.stringify(join(REPO_ROOT, 'lib-common/dist/lock.js'))}); await acquireLock(${JSON.stringify(lockPath)}); console.log('held'); setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise((resolve) => holder.stdout.once('data', resolve));
  holder.kill('SIGKILL');
  await new Promise((resolve) => holder.once('exit', resolve));
  t.ok(existsSync(lockPath), 'the killed holder left its lock behind');

  const fetching = Date.now();
  const logged = registry.logs().length;
  const fetches = await Promise.all(Array.from({ length: PULLS }, (_, i) => runTool('img-fetch', ['--root', root, '--progress=none', refs[i % refs.length]])));
  t.comment(`${PULLS} img-fetch: ${((Date.now() - fetching) / 1000).toFixed(1)} s`);
  t.strictSame(
    fetches.flatMap((run, i) =>
      run.code === 0 && run.records.some((r) => r.type === 'image') ? [] : [`${refs[i % refs.length]}: exit ${run.code} ${run.stderr}`],
    ),
    [],
    'every pull succeeds (the dead holder does not wedge them)',
  );
  const blobs = verifiedBlobs(t, root);
  const downloaded = blobDigests(root, blobs);
  t.ok(downloaded.length >= 7, `${downloaded.length} layer and config blobs`);
  t.strictSame(notOnce(downloaded, logged), {}, `the registry served each blob once to the ${PULLS} concurrent pulls`);
  t.strictSame(readdirSync(join(root, 'ingest')), [], 'no partial download left in ingest/');
  t.strictSame(readdirSync(join(root, 'locks')), [], 'no lock left');
  const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
  const named = index.manifests.map((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name']);
  for (const ref of refs) t.ok(named.includes(ref), `index.json names ${ref}`);

  const unpacking = Date.now();
  const unpacks = await Promise.all(fetches.map((run) => runTool('layer-unpack', ['--root', root, '--progress=json'], { input: run.stdout })));
  t.comment(`${PULLS} layer-unpack: ${((Date.now() - unpacking) / 1000).toFixed(1)} s`);
  t.strictSame(
    unpacks.flatMap((run, i) => (run.code === 0 && run.records.some((r) => r.type === 'rootfs') ? [] : [`unpack ${i}: exit ${run.code} ${run.stderr}`])),
    [],
    'every unpack succeeds',
  );
  // Progress: a `done` event per layer per run, labelled "(reused)" when another run had unpacked it.
  const unpackedBy: Record<string, number> = {};
  const layers = new Set<string>();
  for (const run of unpacks) {
    for (const line of run.stderr.split('\n')) {
      if (!line.startsWith('{')) continue;
      const event = JSON.parse(line);
      if (event.type !== 'progress' || event.phase !== 'done') continue;
      layers.add(event.id);
      if (!String(event.label).endsWith('(reused)')) unpackedBy[event.id] = (unpackedBy[event.id] ?? 0) + 1;
    }
  }
  t.ok(layers.size >= 3, `${layers.size} distinct layers`);
  t.strictSame(unpackedBy, Object.fromEntries([...layers].map((id) => [id, 1])), 'each layer unpacked by exactly one run, reused by the others');
  const dirs = readdirSync(join(root, 'layers'));
  t.strictSame(
    dirs.filter((d) => !/^[0-9a-f]{64}$/.test(d)),
    [],
    'no staging directory left in layers/',
  );
  const layerDirs = unpacks.flatMap((run) => run.records.find((r) => r.type === 'rootfs')?.layerDirs ?? []);
  t.strictSame(
    layerDirs.filter((dir: string) => !existsSync(dir)),
    [],
    `the ${layerDirs.length} layer directories the rootfs records list exist`,
  );
  await fsckClean(t, root);
});
