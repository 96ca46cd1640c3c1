/** cleanUp: the runtime's state is deleted while the container directory is still there, then the directory (never following a symlink out) and the cgroups left go. */
import t from 'tap';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerPaths, makeContainerDir, newContainerId } from '@conveyor/lib-common/overlay/mount';
import { Store } from '@conveyor/lib-common/store';
import { cleanUp } from '../src/cleanup.js';
import { createTrace } from '../src/trace.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';

const root = tempStore('conveyor-cleanup-');
t.teardown(() => removeStore(root));
const store = new Store(root);
const scratch = mkdtempSync(join(tmpdir(), 'conveyor-cleanup-runtime-'));
t.teardown(() => rmSync(scratch, { recursive: true, force: true }));

/**
 * A container directory as a run leaves it: the bundle's files, an upper dir the container wrote to (files, a
 * symlink out of the store, a nested tree), overlayfs's work dirs.
 */
async function finishedRun(): Promise<ReturnType<typeof containerPaths>> {
  const paths = containerPaths(store, newContainerId());
  await makeContainerDir(store, paths);
  for (const file of ['config.json', 'hostname', 'hosts', 'resolv.conf', 'runtime.log', 'state.json']) writeFileSync(join(paths.containerDir, file), 'x');
  mkdirSync(join(paths.upper, 'etc', 'deep', 'er'), { recursive: true });
  writeFileSync(join(paths.upper, 'etc', 'deep', 'er', 'file'), 'data');
  symlinkSync('/etc', join(paths.upper, 'etc', 'host-etc'));
  mkdirSync(join(paths.work, 'work', 'incompat', 'volatile'), { recursive: true });
  return paths;
}

/** An empty cgroup of `id` in each hierarchy that takes one (v1's, or v2's single one), as a killed runtime leaves them. */
function leftCgroups(id: string): string[] {
  const made: string[] = [];
  const hierarchies = existsSync('/sys/fs/cgroup/cgroup.controllers') ? [''] : readdirSync('/sys/fs/cgroup');
  for (const hierarchy of hierarchies) {
    const dir = join('/sys/fs/cgroup', hierarchy, 'conveyor', id);
    try {
      mkdirSync(dir, { recursive: true });
      made.push(dir);
    } catch {
      // a hierarchy that is not a cgroup one (or read-only): none there
    }
  }
  return made;
}

t.test('the runtime state is deleted while the directory is there; the directory and the cgroups go', async (t) => {
  const paths = await finishedRun();
  const runtimeRoot = join(scratch, 'runtime-root');
  mkdirSync(join(runtimeRoot, paths.id), { recursive: true });
  const marker = join(scratch, 'delete-saw');
  // A runtime whose `delete` records whether the container directory was still there.
  const runtime = join(scratch, 'fake-runtime');
  writeFileSync(runtime, `#!/bin/sh\n[ -d '${paths.containerDir}/upper' ] && echo present > '${marker}'\nrm -rf '${runtimeRoot}/${paths.id}'\n`);
  chmodSync(runtime, 0o755);
  const cgroups = leftCgroups(paths.id);
  const lines: string[] = [];
  await cleanUp({
    runtime: { runtime, runtimeRoot },
    store,
    paths,
    cgroupsPath: `/conveyor/${paths.id}`,
    ephemeral: true,
    keep: false,
    runtimeStarted: () => true,
    networkHelper: false,
    trace: createTrace('ctr-spawn', (line) => lines.push(line)),
  });
  t.equal(readFileSync(marker, 'utf8'), 'present\n', 'runtime delete ran before the directory was removed');
  t.notOk(existsSync(paths.containerDir), 'the container directory is gone');
  t.ok(existsSync('/etc/passwd'), 'the symlink out of the store was removed, not followed');
  t.strictSame(
    cgroups.filter((dir) => existsSync(dir)),
    [],
    `the cgroups left are gone (${cgroups.length} made)`,
  );
  const steps = lines.map((line) => /ms (\S+)/.exec(line)?.[1]);
  t.strictSame([...steps].sort(), ['cleanup-helper', 'cleanup-release', 'cleanup-root', 'cleanup-runtime']);
});

t.test('a run whose runtime never started: no runtime call, the cgroups and the directory still go', async (t) => {
  const paths = await finishedRun();
  const cgroups = leftCgroups(paths.id);
  await cleanUp({
    runtime: { runtime: join(scratch, 'no-such-runtime'), runtimeRoot: join(scratch, 'runtime-root') },
    store,
    paths,
    cgroupsPath: `/conveyor/${paths.id}`,
    ephemeral: true,
    keep: false,
    runtimeStarted: () => false,
    networkHelper: false,
  });
  t.notOk(existsSync(paths.containerDir));
  t.strictSame(
    cgroups.filter((dir) => existsSync(dir)),
    [],
  );
});
