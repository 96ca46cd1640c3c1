/**
 * The root the runtime mounts (issue 17): a foreground run of a rootfs
 * record gives runc the overlay as the spec's first mount, on "/", so that
 * nothing is mounted on the host, before, during or after the run (a killed
 * ctr-spawn leaves no mount either). What ctr-spawn put into the root before
 * (the working directory) and beside it (/etc/hosts, /etc/hostname,
 * /etc/resolv.conf, volumes, tmpfs, --read-only) still works; the user and
 * the command are looked up in the layers (lib-common overlay/layered.ts);
 * ctr-exec and img-export see a running container through its init's root.
 * The predicate (record.ts hostMountReason) keeps the mount on the host where
 * the runtime cannot make it, and a forged record cannot add a mount option.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addLayers, busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';
import { runtimeFailure } from '@conveyor/lib-common/container/runtime';
import { hostMountReason } from '../src/record.js';
import { seedsVolumes } from '../src/volumes.js';
import { containerDirs, ctrSpawn, mountsUnder } from './helpers.js';

const root = tempStore('conveyor-rtmount-');
t.teardown(() => removeStore(root));
const rootfs = busyboxRootfs(root, 'latest');
const share = mkdtempSync('/tmp/conveyor-rtmount-share-');
t.teardown(() => rmSync(share, { recursive: true, force: true }));

/** A container that says `ready` (with what it printed before), then waits for the test to create /sync/go (a bind of a host dir: seen at once). */
const WAIT = 'echo ready; i=0; while [ ! -e /sync/go ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done';

interface Observed {
  hostMounts: string[];
  config: Record<string, any>;
  id: string;
}

/** Runs `before; WAIT` in a foreground container and calls `during` (host-side checks) when it is ready, then lets it end. */
async function runAndObserve(
  args: string[],
  before: string,
  during?: (o: Observed) => Promise<void>,
  env?: Record<string, string>,
  at: { root: string; record: Record<string, any> } = { root, record: rootfs },
) {
  const sync = mkdtempSync(join(share, 'sync-'));
  chmodSync(sync, 0o777); // seen by a container user who is not root
  let observed: Observed | undefined;
  let checks: Promise<void> | undefined;
  const run = runTool('ctr-spawn', ['--root', at.root, '--net', 'none', '-v', `${sync}:/sync`, ...args, '--', 'sh', '-c', `${before}; ${WAIT}`], {
    input: JSON.stringify(at.record) + '\n',
    env: env ? { ...process.env, ...env } : undefined,
    onStdout: (stdout) => {
      if (checks || !/(^|\n)ready\n/.test(stdout)) return;
      const [id] = containerDirs(at.root);
      observed = { hostMounts: mountsUnder(at.root), config: JSON.parse(readFileSync(join(at.root, 'containers', id, 'config.json'), 'utf8')), id };
      checks = (async () => {
        try {
          await during?.(observed!);
        } finally {
          writeFileSync(join(sync, 'go'), '');
        }
      })();
    },
  });
  const result = await run;
  await checks;
  return { ...result, observed: observed!, out: result.stdout.replace(/ready\n$/, '') };
}

function assertNothingLeft(t: Tap.Test) {
  t.strictSame(mountsUnder(root), [], 'nothing mounted under the store');
  t.strictSame(containerDirs(root), [], 'no container directory');
}

t.test('hostMountReason and seedsVolumes: who mounts the root', async (t) => {
  const cases: [Parameters<typeof hostMountReason>[0], string | undefined][] = [
    [{}, undefined],
    [{ rootless: true }, 'rootless'],
    [{ overlayDriver: 'overlay' }, 'CONVEYOR_OVERLAY_DRIVER=overlay'],
    [{ overlayDriver: 'copy' }, 'CONVEYOR_OVERLAY_DRIVER=copy'],
    [{ detach: true }, 'detached'],
    [{ printSpec: true }, '--print-spec'],
    [{ specFile: '/tmp/spec.json' }, '--spec'],
    [{ seedsVolume: true }, 'a volume seeded from the image'],
  ];
  for (const [facts, expected] of cases) t.equal(hostMountReason(facts), expected, JSON.stringify(facts));
  const bind = { destination: '/data', source: '/srv', readOnly: false } as any;
  const named = { destination: '/data', source: '', volume: 'v', readOnly: false, noCopy: false } as any;
  const seeds: [any[], unknown, string[], boolean][] = [
    [[], undefined, [], false],
    [[bind], undefined, [], false],
    [[named], undefined, [], true],
    [[{ ...named, noCopy: true }], undefined, [], false],
    [[], { '/var/lib/db': {} }, [], true],
    [[bind], { '/data': {} }, [], false],
    [[], { '/scratch': {} }, ['/scratch'], false],
  ];
  for (const [volumes, imageVolumes, tmpfs, expected] of seeds)
    t.equal(seedsVolumes(volumes, imageVolumes, tmpfs), expected, JSON.stringify([volumes, imageVolumes, tmpfs]));
});

t.test("runtimeFailure: runc's failed mount of the root is ERR_MOUNT_FAILED", async (t) => {
  const cases: [string, string][] = [
    [
      'runc run failed: unable to start container process: error during container init: error mounting "overlay" to rootfs at "/": mount overlay:/ (via /proc/self/fd/7), flags: 0x0, data: lowerdir=/s/l: invalid argument',
      'ERR_MOUNT_FAILED',
    ],
    [
      'runc run failed: unable to start container process: error during container init: error mounting "tmpfs" to rootfs at "/x": no such device',
      'ERR_SPAWN_FAILED',
    ],
    ['runc run failed: unable to start container process: exec: "nope": executable file not found in $PATH', 'ERR_SPAWN_COMMAND_NOT_FOUND'],
  ];
  for (const [message, code] of cases) t.equal(runtimeFailure(message).code, code, message.slice(-60));
});

t.test('the runtime mounts the root: nothing on the host, the options from the store', async (t) => {
  const r = await runAndObserve([], 'head -1 /proc/self/mountinfo; echo written > /made');
  t.equal(r.code, 0, r.stderr);
  const { id, config, hostMounts } = r.observed;
  const dir = join(root, 'containers', id);
  t.strictSame(hostMounts, [], 'nothing mounted on the host while it runs');
  t.strictSame(
    config.mounts[0],
    {
      destination: '/',
      type: 'overlay',
      source: 'overlay',
      options: [`lowerdir=${rootfs.layerDirs[0]}`, `upperdir=${dir}/upper`, `workdir=${dir}/work`, 'volatile'],
    },
    "the overlay is the spec's first mount, volatile (thrown away)",
  );
  t.equal(config.root.path, `${dir}/merged`, 'root.path: the empty merged dir');
  t.match(r.out, new RegExp(` / / rw,[^ ]* - overlay overlay rw,lowerdir=${rootfs.layerDirs[0]},upperdir=${dir}/upper`), 'the container sees the overlay as /');
  assertNothingLeft(t);
});

t.test('--keep: the writes stay in upper, nothing mounted after', async (t) => {
  const r = await ctrSpawn(rootfs, ['--root', root, '--net', 'none', '--keep', '--', 'sh', '-c', 'echo kept > /made; rm /bin/cat']);
  t.equal(r.code, 0, r.stderr);
  const [id] = containerDirs(root);
  t.equal(readFileSync(join(root, 'containers', id, 'upper', 'made'), 'utf8'), 'kept\n', 'a write landed in upper');
  t.ok(existsSync(join(root, 'containers', id, 'upper', 'bin', 'cat')), 'a delete is a whiteout in upper');
  t.strictSame(mountsUnder(root), [], 'nothing mounted');
  const rm = await runTool('ctr-rm', ['--root', root, id]);
  t.equal(rm.code, 0, rm.stderr);
  assertNothingLeft(t);
});

t.test('what ctr-spawn puts into and beside the root still works', async (t) => {
  const data = mkdtempSync(join(share, 'data-'));
  chmodSync(data, 0o777);
  writeFileSync(join(data, 'in'), 'from the host\n');
  const r = await runAndObserve(
    [
      '-v',
      `${data}:/data`,
      '--tmpfs',
      '/scratch',
      '--hostname',
      'box',
      '--add-host',
      'db:10.1.2.3',
      '--dns',
      '192.0.2.53',
      '-w',
      '/new/work/dir',
      '-u',
      'nobody',
      '--group-add',
      'staff',
    ],
    [
      'id -u; id -G; pwd',
      'cat /etc/hostname; grep db /etc/hosts; cat /etc/resolv.conf',
      'cat /data/in; echo out > /data/out',
      "grep ' /scratch ' /proc/self/mountinfo | cut -d' ' -f9",
    ].join('; '),
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(r.out, ['65534', '65534 50', '/new/work/dir', 'box', '10.1.2.3\tdb', 'nameserver 192.0.2.53', 'from the host', 'tmpfs', ''].join('\n'));
  t.equal(readFileSync(join(data, 'out'), 'utf8'), 'out\n', 'the bind mount is the host dir');
  t.strictSame(r.observed.hostMounts, [], 'nothing on the host');
  assertNothingLeft(t);
});

t.test('--read-only: the root and the name files are read-only, the working directory is made', async (t) => {
  const r = await runAndObserve(
    ['--read-only', '-w', '/made/here'],
    'pwd; touch /x 2>/dev/null || echo root ro; echo >> /etc/hosts 2>/dev/null || echo hosts ro',
  );
  t.equal(r.code, 0, r.stderr);
  t.equal(r.out, '/made/here\nroot ro\nhosts ro\n');
  t.equal(r.observed.config.root.readonly, true);
  assertNothingLeft(t);
});

t.test('the host mounts it where the runtime cannot: forced driver, a seeded volume', async (t) => {
  const forced = await runAndObserve([], 'true', undefined, { CONVEYOR_OVERLAY_DRIVER: 'overlay' });
  t.equal(forced.code, 0, forced.stderr);
  const dir = join(root, 'containers', forced.observed.id);
  t.strictSame(forced.observed.hostMounts, [`${dir}/merged`], 'CONVEYOR_OVERLAY_DRIVER=overlay: mounted on merged while it runs');
  t.notOk(
    forced.observed.config.mounts.some((m: any) => m.type === 'overlay'),
    'the spec has no overlay mount',
  );
  assertNothingLeft(t);
  const seeded = await runAndObserve(['-v', 'rtmount-etc:/etc/seeded'], 'true');
  t.equal(seeded.code, 0, seeded.stderr);
  t.match(seeded.observed.hostMounts, [/\/merged$/], 'a named volume seeded from the image: mounted here');
  assertNothingLeft(t);
  await runTool('vol-rm', ['--root', root, 'rtmount-etc']);
  // Layers whose options overflow a page need short links, resolved against mount(8)'s working directory.
  const deep = tempStore('conveyor-rtmount-deep-', 200);
  t.teardown(() => removeStore(deep));
  const record = addLayers(deep, busyboxRootfs(deep, 'latest'), 40);
  const linked = await runAndObserve([], 'cat /layers/39', undefined, undefined, { root: deep, record });
  t.equal(linked.code, 0, linked.stderr);
  t.equal(linked.out, 'layer 39\n');
  t.match(linked.observed.hostMounts, [/\/merged$/], 'short links: mounted here');
  t.strictSame(mountsUnder(deep), [], 'and unmounted after');
});

t.test('ctr-exec -u/-w and img-export --rootfs of a running foreground container', async (t) => {
  const out = join(share, 'exported.tar');
  const r = await runAndObserve([], 'echo made > /made.txt', async ({ id }) => {
    const exec = await runTool('ctr-exec', ['--root', root, '-u', 'nobody', '-w', '/tmp', id.slice(0, 12), 'sh', '-c', 'id -u; pwd; cat /made.txt']);
    t.equal(exec.code, 0, exec.stderr);
    t.equal(exec.stdout, '65534\n/tmp\nmade\n', "ctr-exec resolves the user and the directory in the container's root");
    const missing = await runTool('ctr-exec', ['--root', root, '-u', 'nosuchuser', id.slice(0, 12), 'true']);
    t.equal(missing.code, 125);
    t.match(missing.stderr, /nosuchuser/);
    const exported = await runTool('img-export', ['--root', root, '--rootfs', id.slice(0, 12), '-o', out]);
    t.equal(exported.code, 0, exported.stderr);
  });
  t.equal(r.code, 0, r.stderr);
  const names = execFileSync('tar', ['-tf', out], { encoding: 'utf8' }).split('\n');
  t.ok(names.includes('made.txt'), 'a file the container wrote');
  t.ok(names.includes('bin/sh'), "the image's files");
  t.ok(names.includes('proc'), 'the mount point of /proc');
  t.notOk(
    names.some((n) => n.startsWith('proc/')),
    'nothing mounted over the root in the container (/proc)',
  );
  t.notOk(
    names.some((n) => n.startsWith('sync/')),
    'nor a volume',
  );
  assertNothingLeft(t);
});

t.test('a killed ctr-spawn leaves no mount', async (t) => {
  let mountsWhenKilled: string[] | undefined;
  let removal: ReturnType<typeof runTool> | undefined;
  const r = await runTool('ctr-spawn', ['--root', root, '--net', 'none', '--', 'sh', '-c', 'echo ready; sleep 30'], {
    input: JSON.stringify(rootfs) + '\n',
    onStdout: (stdout, child) => {
      if (mountsWhenKilled || !stdout.includes('ready')) return;
      mountsWhenKilled = mountsUnder(root);
      child.kill('SIGKILL');
      // The container runs on (runc in its session) and holds our pipe: removed now, it ends.
      child.on('exit', () => (removal = runTool('ctr-rm', ['--root', root, '-f', containerDirs(root)[0]])));
    },
  });
  t.equal(r.signal, 'SIGKILL');
  t.strictSame(mountsWhenKilled, [], 'nothing mounted while it ran');
  t.strictSame(mountsUnder(root), [], 'nor after its death');
  const removed = await removal;
  t.equal(removed?.code, 0, removed?.stderr);
  assertNothingLeft(t);
});

t.test('a forged record cannot add a mount option', async (t) => {
  const forged = [
    { ...rootfs, layerDirs: [`${rootfs.layerDirs[0]},upperdir=/etc`] },
    { ...rootfs, layerDirs: [`${rootfs.layerDirs[0]}:/etc`] },
    { ...rootfs, layerDirs: rootfs.layerDirs, upper: '/etc', options: 'upperdir=/etc', mountOptions: ['upperdir=/etc'] },
  ];
  for (const record of forged.slice(0, 2)) {
    const r = await ctrSpawn(record, ['--root', root, '--log-format=json', '--', 'true']);
    t.equal(r.code, 125, JSON.stringify(record.layerDirs));
    t.equal(JSON.parse(r.stderr.trim().split('\n').at(-1)!).code, 'ERR_INPUT_RECORD');
  }
  const extra = await ctrSpawn(forged[2], ['--root', root, '--net', 'none', '--', 'sh', '-c', 'head -1 /proc/self/mountinfo']);
  t.equal(extra.code, 0, extra.stderr);
  t.notMatch(extra.stdout, /\/etc/, "the record's extra fields are not options: upper is the container's");
  t.match(extra.stdout, new RegExp(`upperdir=${root}/containers/[0-9a-f]{64}/upper`));
  assertNothingLeft(t);
});
