/**
 * Rootless end to end (issue 15, docs/rootless.md): as the unprivileged users of
 * helpers/rootless.ts, `conveyor-rl-sub` (a subordinate id range) and `conveyor-rl-nosub` (a
 * single mapping), each in a fresh store of its own:
 *  - the README pipeline verbatim (`img-fetch alpine | layer-unpack | ctr-spawn -- id -u` → 0),
 *    and with overlay-mount in the middle (then unmounted with overlay-mount --unmount);
 *  - the control plane: ctr-spawn -d, ctr-ls, ctr-logs, ctr-exec, ctr-stop, ctr-rm;
 *  - a container whose keeper died: ctr-exec, ctr-kill, ctr-stop and ctr-rm still act on it (ctr-rm -f
 *    kills from outside, then removes inside);
 *  - img-build: a RUN step (a user added, chown by name) and COPY --chown; the layer tar carries
 *    the in-container owners (1000, not the host's 300999) with a range, and 0 (with a warning)
 *    under a single mapping; conveyor-build (build, test, push) with a range;
 *  - conveyor-run;
 *  - afterwards nothing in the store is owned by root, nothing is mounted under it in the keeper's
 *    mount namespace, and no process of the store runs but the keeper (removed at teardown).
 * The tools are reached through a bin dir of links, as `make install` puts them on PATH; docker.io
 * is mirrored by a local registry seeded with busybox as `alpine`.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { busyboxLayout, REPO_ROOT } from './helpers/fixtures.js';
import { pushImage, startRegistry } from './helpers/registry.js';
import { userDevicesAsDistributions } from './helpers/rootless-image.js';
import { NOSUB_USER, type RootlessUser, runAs, SUB_USER, ownedByRoot, rootlessUser, userCheckout, userStore, userToolPath } from './helpers/rootless.js';
import { jsonLines } from './helpers/tools.js';

// pasta opens /dev/net/tun as the users (test/run.sh sets it up too, for the whole suite).
userDevicesAsDistributions();
const registry = await startRegistry();
t.teardown(() => registry.stop());
await pushImage(`${busyboxLayout()}:latest`, registry, 'library/alpine:latest');

// A Debian user's login PATH (no sbin directories): what the tools must make do with.
const PATH = '/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games';
const TIMEOUT_MS = 90_000;

interface Session {
  user: RootlessUser;
  store: string;
  /** The directory userStore made (the store's parent): the bin dir and build contexts live there. */
  dir: string;
  bin: string;
}

/** A fresh store for `user`, and a bin dir with every tool (and conveyor-run) linked, as `make install` does. */
function session(name: typeof SUB_USER | typeof NOSUB_USER, t: { teardown(fn: () => void): void }): Session {
  const user = rootlessUser(name);
  const store = userStore(user, t);
  const dir = dirname(store);
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  for (const tool of readdirSync(join(REPO_ROOT, 'tools'))) {
    if (existsSync(join(REPO_ROOT, 'tools', tool, 'bin', `${tool}.js`))) symlinkSync(userToolPath(tool), join(bin, tool));
  }
  symlinkSync(join(userCheckout(), 'scripts', 'run.mjs'), join(bin, 'conveyor-run'));
  symlinkSync(join(userCheckout(), 'scripts', 'build.mjs'), join(bin, 'conveyor-build'));
  chownSync(bin, user.uid, user.gid);
  return { user, store, dir, bin };
}

/** Runs a shell command line as the session's user, as it would be typed (bash, pipefail). */
async function sh(s: Session, line: string) {
  const result = await runAs(s.user, 'bash', ['-o', 'pipefail', '-c', line], {
    env: { PATH: `${s.bin}:${PATH}`, CONVEYOR_ROOT: s.store, CONVEYOR_REGISTRY_MIRRORS: registry.host },
    cwd: s.dir,
    timeoutMs: TIMEOUT_MS,
  });
  return { ...result, records: jsonLines(result.stdout) };
}

/** The store's keeper pid (run/userns.json), or undefined. */
function keeperPid(store: string): number | undefined {
  try {
    return JSON.parse(readFileSync(join(store, 'run', 'userns.json'), 'utf8')).pid;
  } catch {
    return undefined;
  }
}

/** Mount points under the store in the keeper's mount namespace. */
function mountsInKeeper(store: string): string[] {
  const pid = keeperPid(store);
  if (pid === undefined || !existsSync(`/proc/${pid}`)) return [];
  return readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point) => point?.startsWith(`${store}/`));
}

/**
 * Processes of this store but its keeper: in its keeper's user namespace (containers,
 * supervisors, pasta) or naming the store. Other test files run as the same users at the same
 * time, in stores and namespaces of their own: those are not judged here. (A dead namespace's
 * inode number is soon reused by a new one, so only the live keeper's namespace is asked about.)
 */
function processesLeft(s: Session): string[] {
  const keeper = keeperPid(s.store);
  const namespace = keeper === undefined ? undefined : readlinkSync(`/proc/${keeper}/ns/user`);
  const found: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === keeper) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // A zombie has ended already; its parent (init, for a daemon) reaps it in its own time.
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (readlinkSync(`/proc/${pid}/ns/user`) === namespace || cmdline.includes(s.store)) found.push(`${pid} ${cmdline}`);
    } catch {
      // gone, or a kernel thread
    }
  }
  return found;
}

/** Field 22 of /proc/PID/stat (start time), or undefined when the process is gone. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** The layer blobs of image `ref` in the store (read as root from its index and manifest). */
function layerBlobs(store: string, ref: string): string[] {
  const index = JSON.parse(readFileSync(join(store, 'index.json'), 'utf8'));
  const entry = index.manifests.find((m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === ref);
  if (!entry) throw new Error(`${ref} is not in ${store}/index.json`);
  const blob = (digest: string) => join(store, 'blobs', 'sha256', digest.slice('sha256:'.length));
  const manifest = JSON.parse(readFileSync(blob(entry.digest), 'utf8'));
  return manifest.layers.map((layer: { digest: string }) => blob(layer.digest));
}

/** `owner path` (numeric uid/gid) of every entry of a gzip'ed layer tar. */
function tarOwners(blob: string): Map<string, string> {
  const listing = execFileSync('tar', ['--numeric-owner', '-tvzf', blob], { encoding: 'utf8' });
  const owners = new Map<string, string>();
  for (const line of listing.split('\n').filter(Boolean)) {
    const fields = line.split(/\s+/);
    owners.set(
      fields
        .slice(5)
        .join(' ')
        .replace(/ -> .*$/, ''),
      fields[1],
    );
  }
  return owners;
}

// The two users' runs are independent (own stores, own keepers): side by side.
t.jobs = 2;
for (const name of [SUB_USER, NOSUB_USER] as const) {
  const ranged = name === SUB_USER;
  t.test(`as ${name}`, async (t) => {
    const s = session(name, t);

    t.test('the README pipeline: img-fetch alpine | layer-unpack | ctr-spawn -- id -u prints 0', async (t) => {
      const run = await sh(s, 'img-fetch alpine | layer-unpack | ctr-spawn -- id -u');
      t.equal(run.code, 0, `exit 0\n${run.stderr}`);
      t.equal(run.stdout, '0\n', 'root inside');
      t.ok(keeperPid(s.store), 'a keeper is recorded in run/userns.json');
      t.equal(statSync(s.store).mode & 0o777, 0o700, 'the store is 0700');
    });

    t.test('with overlay-mount in the middle, then overlay-mount --unmount', async (t) => {
      const run = await sh(s, 'img-ls alpine | layer-unpack | overlay-mount | ctr-spawn -- sh -c "id -u; echo written > /tmp/note"');
      t.equal(run.code, 0, `exit 0\n${run.stderr}`);
      t.equal(run.stdout, '0\n', 'root inside');
      t.ok(mountsInKeeper(s.store).length > 0, "overlay-mount's overlay stays mounted in the keeper's mount namespace");
      const unmount = await sh(s, 'overlay-mount --unmount $(ls "$CONVEYOR_ROOT/containers")');
      t.equal(unmount.code, 0, `unmounted\n${unmount.stderr}`);
      t.strictSame(mountsInKeeper(s.store), [], 'nothing left mounted');
    });

    if (ranged) {
      t.test('with a range, -u 1000 runs as 1000 inside, which is a subordinate id outside', async (t) => {
        const run = await sh(s, 'img-ls alpine | layer-unpack | ctr-spawn -u 1000:1000 -- sh -c "id -u; touch /tmp/mine; stat -c %u /tmp/mine"');
        t.equal(run.code, 0, `exit 0\n${run.stderr}`);
        t.equal(run.stdout, '1000\n1000\n', 'uid 1000 inside, and its file is 1000 there');
      });
    }

    t.test('the control plane: ctr-spawn -d, ctr-ls, ctr-logs, ctr-exec, ctr-stop, ctr-rm', async (t) => {
      const spawned = await sh(s, 'img-ls alpine | layer-unpack | ctr-spawn -d --name web -- sh -c "echo hello; exec sleep 120"');
      t.equal(spawned.code, 0, `ctr-spawn -d exits 0\n${spawned.stderr}`);
      const record = spawned.records.find((r) => r.type === 'container');
      t.equal(record?.name, 'web', 'a container record');
      const listed = await sh(s, 'ctr-ls');
      t.equal(listed.code, 0, listed.stderr);
      t.match(
        listed.records.find((r) => r.name === 'web'),
        { status: 'running' },
        'ctr-ls shows it running',
      );
      let logs = await sh(s, 'ctr-logs web');
      for (let i = 0; i < 50 && logs.stdout === ''; i++) logs = await sh(s, 'sleep 0.1; ctr-logs web');
      t.equal(logs.stdout, 'hello\n', 'ctr-logs shows its output');
      const exec = await sh(s, "ctr-exec web sh -c \"id -u; cat /proc/1/cmdline | tr '\\0' ' '\"");
      t.equal(exec.code, 0, `ctr-exec exits 0\n${exec.stderr}`);
      t.equal(exec.stdout, '0\nsleep 120 ', 'ctr-exec runs in the container, as root there');
      if (ranged) {
        const asUser = await sh(s, 'ctr-exec -u 1000 -w /tmp web id -u');
        t.equal(asUser.stdout, '1000\n', `ctr-exec -u 1000 -w /tmp\n${asUser.stderr}`);
      }
      const stats = await sh(s, 'ctr-stats --no-stream --interval 0.2 web');
      t.equal(stats.code, 0, `ctr-stats exits 0\n${stats.stderr}`);
      t.match(stats.stderr, /web has no cgroup to read/, 'ctr-stats says why a container without a delegated cgroup has no numbers');
      const stopped = await sh(s, 'ctr-stop -t 1 web');
      t.equal(stopped.code, 0, `ctr-stop exits 0\n${stopped.stderr}`);
      t.equal(stopped.records[0]?.status, 'exited', 'it is exited');
      const removed = await sh(s, 'ctr-rm web');
      t.equal(removed.code, 0, `ctr-rm exits 0\n${removed.stderr}`);
      t.equal(removed.records[0]?.type, 'removed', 'a removed record');
      t.strictSame(readdirSync(join(s.store, 'containers')), [], 'its directory is gone');
    });

    t.test('a container whose keeper died can still be exec-ed into, signalled, stopped and removed', async (t) => {
      // With a range it runs as a subordinate id: only its own user namespace (or the user outside) may act on it.
      const user = ranged ? '-u 1000:1000 ' : '';
      // It writes a file in its upper dir, owned by what it runs as (a subordinate id with a range), for ctr-rm to remove.
      const trap = `touch /tmp/mine; trap 'echo got USR1' USR1; while :; do sleep 0.2; done`;
      const spawned = await sh(s, `img-ls alpine | layer-unpack | ctr-spawn -d --name orphan ${user}-- sh -c "${trap}"`);
      t.equal(spawned.code, 0, `ctr-spawn -d exits 0\n${spawned.stderr}`);
      const pid = spawned.records.find((r) => r.type === 'container')?.pid;
      t.ok(pid, 'its record has the pid');
      const started = startTimeOf(pid);
      const keeper = keeperPid(s.store);
      t.ok(keeper, 'a keeper');
      process.kill(keeper as number, 'SIGKILL');
      const exec = await sh(s, 'ctr-exec orphan id -u');
      t.equal(exec.code, 0, `ctr-exec exits 0\n${exec.stderr}`);
      t.equal(exec.stdout, ranged ? '1000\n' : '0\n', 'in the container');
      const killed = await sh(s, 'ctr-kill -s USR1 orphan');
      t.equal(killed.code, 0, `ctr-kill exits 0\n${killed.stderr}`);
      let logs = await sh(s, 'ctr-logs orphan');
      for (let i = 0; i < 50 && logs.stdout === ''; i++) logs = await sh(s, 'sleep 0.1; ctr-logs orphan');
      t.equal(logs.stdout, 'got USR1\n', "ctr-kill's signal reached it");
      const mine = join(s.store, 'containers', spawned.records.find((r) => r.type === 'container')?.id, 'upper', 'tmp', 'mine');
      t.equal(statSync(mine).uid, ranged ? (s.user.range?.start ?? 0) + 999 : s.user.uid, 'its upper dir holds a file of the id it ran as');
      let removed: Awaited<ReturnType<typeof sh>>;
      if (ranged) {
        // Its process runs as a subordinate id in the dead keeper's namespace, which a new keeper cannot signal:
        // ctr-rm -f kills it from outside first, then removes it inside.
        removed = await sh(s, 'ctr-rm -f orphan');
        t.equal(removed.code, 0, `ctr-rm -f exits 0\n${removed.stderr}`);
        t.not(startTimeOf(pid), started, 'its process is gone');
      } else {
        const stopped = await sh(s, 'ctr-stop -t 1 orphan');
        t.equal(stopped.code, 0, `ctr-stop exits 0\n${stopped.stderr}`);
        t.equal(stopped.records[0]?.status, 'exited', 'stopped');
        t.not(startTimeOf(pid), started, 'its process is gone');
        removed = await sh(s, 'ctr-rm orphan');
        t.equal(removed.code, 0, `ctr-rm exits 0 (in a new keeper)\n${removed.stderr}`);
      }
      t.strictSame(
        removed.records.map((r) => r.type),
        ['removed'],
        'one removed record',
      );
      t.not(keeperPid(s.store), keeper, 'a new keeper was made');
      t.strictSame(readdirSync(join(s.store, 'containers')), [], 'its directory is gone');
    });

    t.test('img-build: RUN in a container, COPY --chown; the layer tar has the in-container owners', async (t) => {
      const context = join(s.dir, 'context');
      mkdirSync(context);
      writeFileSync(join(context, 'hello.txt'), 'hello\n');
      const dockerfile = ranged
        ? // A user added to the image (its busybox has no adduser link), chown to it by name, COPY --chown by name.
          [
            'FROM alpine',
            "RUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group && mkdir /data && echo made > /data/run.txt && chown -R app:app /data",
            'COPY --chown=app:app hello.txt /data/hello.txt',
            '',
          ].join('\n')
        : 'FROM alpine\nRUN mkdir /data && echo made > /data/run.txt\nCOPY --chown=1000:1000 hello.txt /data/hello.txt\n';
      writeFileSync(join(context, 'Dockerfile'), dockerfile);
      execFileSync('chown', ['-R', `${s.user.uid}:${s.user.gid}`, context]);
      const built = await sh(s, 'img-build -t built:1 context');
      t.equal(built.code, 0, `img-build exits 0\n${built.stderr}`);
      if (!ranged) t.match(built.stderr, /--chown=1000:1000 .*not mapped/, 'a single mapping warns that --chown cannot be applied');
      const [, runLayer, copyLayer] = layerBlobs(s.store, 'docker.io/library/built:1');
      const expected = ranged ? '1000/1000' : '0/0';
      t.equal(tarOwners(runLayer).get('data/run.txt'), expected, `RUN's file: ${expected}`);
      t.equal(tarOwners(copyLayer).get('data/hello.txt'), expected, `COPY --chown's file: ${expected}`);
      const ran = await sh(s, 'img-ls built:1 | layer-unpack | ctr-spawn -- cat /data/hello.txt /data/run.txt');
      t.equal(ran.stdout, 'hello\nmade\n', `the built image runs\n${ran.stderr}`);
      if (!ranged) {
        // Once is enough: the refusal does not depend on the mapping.
        const copy = await sh(s, 'CONVEYOR_OVERLAY_DRIVER=copy img-build --no-cache -t built:copy context');
        t.not(copy.code, 0, 'the copy driver is refused for a build');
        t.match(copy.stderr, /cannot build on the copy driver/, "a step's deletions would be lost: said so");
      }
    });

    t.test('conveyor-run', async (t) => {
      const run = await sh(s, 'conveyor-run --rm alpine sh -c "id -u; exit 3"');
      t.equal(run.code, 3, `the container's exit code\n${run.stderr}`);
      t.equal(run.stdout, '0\n', 'root inside');
    });

    // The same tools as above, composed: once is enough.
    if (ranged)
      t.test('conveyor-build: build, test in a container, push', async (t) => {
        const ref = `${registry.host}/rootless/${name}:1`;
        const run = await sh(s, `conveyor-build -q -t ${ref} --test 'test "$(id -u)" = 0 && cat /data/hello.txt' --push context`);
        t.equal(run.code, 0, `exit 0\n${run.stderr}`);
        t.match(run.records, [{ type: 'image', ref }], 'pushed');
        t.match(run.stderr, /hello/, "the test's output");
      });

    t.test('afterwards: nothing owned by root, nothing mounted, no process left but the keeper', async (t) => {
      t.strictSame(ownedByRoot(s.store), [], 'nothing in the store is owned by root');
      t.strictSame(mountsInKeeper(s.store), [], 'nothing mounted under the store');
      t.strictSame(processesLeft(s), [], 'no process left');
    });
  });
}
