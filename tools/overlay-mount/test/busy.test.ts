/**
 * overlay-mount --unmount and containers: a mount that a running container
 * (ctr-spawn -d on the mount record) uses is refused and left whole; once
 * the container has ended, it is unmounted and removed with its state.
 * The mount is named by record, id, container name or id prefix.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Store } from '@conveyor/lib-common/store';
import { readState } from '@conveyor/lib-common/container/state';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const mounted = (path: string) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === path);

t.test('a mount in use by a running container is refused; after it ends, unmounted', async (t) => {
  const root = tempStore('conveyor-busy-');
  const store = new Store(root);
  let id: string | undefined;
  t.teardown(() => {
    if (id) execFileSync('runc', ['--root', '/run/conveyor-runc', 'delete', '--force', id], { stdio: 'ignore' });
    removeStore(root);
  });
  const mount = await runTool('overlay-mount', [], { input: JSON.stringify(busyboxRootfs(root, 'latest')) + '\n' });
  t.equal(mount.code, 0, mount.stderr);
  const record = mount.records[0];
  id = record.id as string;
  const run = await runTool('ctr-spawn', ['-d', '--name', 'busy', '--', 'sleep', '30'], { input: JSON.stringify(record) + '\n' });
  t.equal(run.code, 0, run.stderr);
  t.equal(run.records[0].id, id, 'the container runs on the mount');

  for (const [args, input] of [
    [['--unmount'], JSON.stringify(record) + '\n'],
    [['--unmount', '--root', root, id], ''],
    [['--unmount', '--root', root, 'busy'], ''],
    [['--unmount', '--root', root, id.slice(0, 10)], ''],
  ] as [string[], string][]) {
    const r = await runTool('overlay-mount', ['--log-format=json', ...args], { input });
    t.equal(r.code, 1, `${args.join(' ')}: exit 1`);
    t.equal(r.logs[0]?.code, 'ERR_CONTAINER_RUNNING');
    t.match(r.logs[0]?.message, /busy is running/);
  }
  t.ok(mounted(record.target), 'still mounted');
  t.ok(existsSync(join(record.containerDir, 'state.json')), 'its state is untouched');
  t.ok(existsSync(record.upper), 'its upper dir is untouched');

  execFileSync('runc', ['--root', '/run/conveyor-runc', 'kill', id, 'KILL']);
  for (let i = 0; i < 200 && (await readState(store, id))?.status !== 'exited'; i++) await sleep(50);
  t.equal((await readState(store, id))?.status, 'exited');
  t.ok(mounted(record.target), 'the supervisor leaves a mount it did not make');
  const r = await runTool('overlay-mount', ['--unmount', '--root', root, 'busy']);
  t.equal(r.code, 0, r.stderr);
  t.notOk(mounted(record.target), 'unmounted (by the container name) once the container ended');
  t.notOk(existsSync(record.containerDir), 'removed with its state and log');
});

t.test('--unmount of a name or prefix that names no container is refused', async (t) => {
  const root = tempStore('conveyor-busy-');
  t.teardown(() => removeStore(root));
  const r = await runTool('overlay-mount', ['--log-format=json', '--unmount', '--root', root, 'nobody']);
  t.equal(r.code, 1);
  t.equal(r.logs[0]?.code, 'ERR_CONTAINER_NOT_FOUND');
  const gone = await runTool('overlay-mount', ['--unmount', '--root', root, 'f'.repeat(64)]);
  t.equal(gone.code, 0, 'a full id whose overlay is already gone is not an error');
});
