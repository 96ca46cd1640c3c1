/**
 * overlay-mount run by an unprivileged user with a subordinate range (issue 15), for real: the
 * README pipeline img-fetch | layer-unpack | overlay-mount | ctr-spawn as test/helpers/rootless.ts's
 * conveyor-rl-sub, and each driver forced (kernel overlay with userxattr, fuse-overlayfs, copy) on
 * an image with a whiteout and an opaque dir (test/helpers/rootless-image.ts): the mount record
 * says the driver, the mount is made in the keeper's namespace and a ctr-spawn that joins it runs
 * on it, what the container writes lands in the upper dir only, --unmount leaves nothing mounted
 * (nor a fuse-overlayfs daemon), and nothing in the store is owned by root.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pushImage, startRegistry } from '../../../test/helpers/registry.js';
import { ownedByRoot, rootlessUser, runAs, runToolAs, SUB_USER, userStore, userToolPath } from '../../../test/helpers/rootless.js';
import { removeLayout, rootlessTestLayout, userDevicesAsDistributions } from '../../../test/helpers/rootless-image.js';

userDevicesAsDistributions();
const layout = rootlessTestLayout();
t.teardown(() => removeLayout(layout));
const registry = await startRegistry();
t.teardown(() => registry.stop());
await pushImage(layout, registry, 'rl/test:latest');
const REF = `${registry.host}/rl/test:latest`;

const user = rootlessUser(SUB_USER);
const store = userStore(user, t);
const rootfsFile = join(store, '..', 'rootfs.json');
const TOOLS = join(userToolPath('overlay-mount'), '..', '..', '..');
const PROBE = 'ls /opq; test -e /gone.txt && echo present || echo gone; cat /data/keep; echo written > /written';

function sh(script: string, env: NodeJS.ProcessEnv = {}) {
  return runAs(user, 'sh', ['-c', script], { env: { T: TOOLS, S: store, R: rootfsFile, ...env } });
}

function keeperPid(): number {
  return JSON.parse(readFileSync(join(store, 'run', 'userns.json'), 'utf8')).pid;
}

/** Mount points under the store in the keeper's mount namespace. */
function keeperMounts(): string[] {
  return readFileSync(`/proc/${keeperPid()}/mountinfo`, 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point) => point?.startsWith(`${store}/`));
}

/** Processes whose command line names `text` (a fuse-overlayfs daemon serving a container dir). */
function processesNaming(text: string): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}

t.test('img-fetch | layer-unpack | overlay-mount | ctr-spawn', async (t) => {
  const run = await sh(
    `node $T/img-fetch/bin/img-fetch.js --root $S --plain-http -q ${REF} | node $T/layer-unpack/bin/layer-unpack.js --root $S | tee $R | node $T/overlay-mount/bin/overlay-mount.js --root $S -q | node $T/ctr-spawn/bin/ctr-spawn.js --root $S --net none -- cat /data/keep`,
  );
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout, 'keep\n', 'ctr-spawn ran on the mount overlay-mount made in the keeper');
  const ids = readdirSync(join(store, 'containers'));
  t.equal(ids.length, 1, 'the mount stays after the container (a mount record is not ephemeral)');
  t.strictSame(keeperMounts(), [join(store, 'containers', ids[0], 'merged')]);
  const unmount = await runToolAs(user, 'overlay-mount', ['--root', store, '--unmount', ids[0]]);
  t.equal(unmount.code, 0, unmount.stderr);
  t.strictSame(keeperMounts(), []);
});

for (const driver of ['overlay', 'fuse-overlayfs', 'copy'] as const) {
  t.test(`driver ${driver} forced: whiteout, opaque dir, writes in the upper dir only`, async (t) => {
    const mounted = await runToolAs(user, 'overlay-mount', ['--root', store], {
      input: readFileSync(rootfsFile),
      env: { CONVEYOR_OVERLAY_DRIVER: driver },
    });
    t.equal(mounted.code, 0, mounted.stderr);
    const record = mounted.records[0];
    t.equal(record?.type, 'mount');
    t.equal(record.driver, driver, 'the record says the driver');
    const id = record.id as string;
    t.ok(keeperMounts().includes(record.target), 'mounted in the keeper');
    // Looked at from inside the keeper as the user (its uid 0); ctr-spawn on a mount record is the first test's.
    const look = execFileSync('nsenter', ['--target', String(keeperPid()), '--user', '--mount', '--', 'sh', '-c', PROBE.replaceAll(' /', ' $M/')], {
      env: { M: record.target, PATH: '/usr/bin:/bin' },
      encoding: 'utf8',
    });
    t.strictSame(look.trim().split('\n'), ['upper-file', 'gone', 'keep'], 'whiteout and opaque dir honoured');
    t.equal(readFileSync(join(record.upper, 'written'), 'utf8'), 'written\n', 'the write is in the upper dir');
    for (const lower of record.layerDirs as string[]) t.notOk(existsSync(join(lower, 'written')), 'and in no layer');
    const unmount = await runToolAs(user, 'overlay-mount', ['--root', store, '--unmount'], { input: `${JSON.stringify(record)}\n` });
    t.equal(unmount.code, 0, unmount.stderr);
    t.strictSame(keeperMounts(), [], 'nothing left mounted');
    t.notOk(existsSync(join(store, 'containers', id)), 'the container dir is gone');
    t.strictSame(processesNaming(join(store, 'containers', id)), [], 'no process serves it any more');
  });
}

t.test('a driver name that is none is refused before anything is mounted', async (t) => {
  const run = await runToolAs(user, 'overlay-mount', ['--root', store], { input: readFileSync(rootfsFile), env: { CONVEYOR_OVERLAY_DRIVER: 'aufs' } });
  t.equal(run.code, 2, run.stderr);
  t.match(run.stderr, /CONVEYOR_OVERLAY_DRIVER="aufs": not a driver/);
  t.strictSame(keeperMounts(), []);
});

t.test('nothing in the store is owned by root', async (t) => {
  t.strictSame(ownedByRoot(store), []);
});
