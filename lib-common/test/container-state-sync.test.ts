/**
 * writeStateSync (container/state.ts, issue 17), a foreground run's first
 * state.json in synchronous calls: readState reads back what it wrote, a
 * second write replaces the first, no temporary file is left, and a
 * container directory that is missing is ERR_STORE_IO naming the path and the
 * store, with nothing left behind.
 */
import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ContainerState, readState, writeStateSync } from '@conveyor/lib-common/container/state';
import { RECORD_VERSION } from '@conveyor/lib-common/records';
import { Store } from '@conveyor/lib-common/store';

const base = mkdtempSync(join(tmpdir(), 'conveyor-statesync-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));

function state(store: Store, id: string, status: ContainerState['status']): ContainerState {
  return {
    type: 'container',
    v: RECORD_VERSION,
    id,
    status,
    store: store.root,
    runtime: 'runc',
    runtimeRoot: '/run/conveyor-runc',
    cgroupsPath: `/conveyor/${id}`,
    ephemeralMount: true,
    rootfs: join(store.containerDir(id), 'merged'),
  };
}

t.test('written, read back, replaced; no temporary file left', async (t) => {
  const store = new Store(join(base, 'store'));
  await store.init();
  const id = 'a'.repeat(64);
  mkdirSync(store.containerDir(id), { recursive: true });
  writeStateSync(store, state(store, id, 'created'), 4242);
  t.match(await readState(store, id), { id, status: 'created' });
  writeStateSync(store, state(store, id, 'running'), 4242);
  t.match(await readState(store, id), { id, status: 'running' }, 'the second write replaces the first');
  t.strictSame(readdirSync(store.containerDir(id)), ['state.json'], 'no temporary file');
});

t.test('a missing container directory: ERR_STORE_IO naming the path and the store', async (t) => {
  const store = new Store(join(base, 'store2'));
  await store.init();
  const id = 'b'.repeat(64);
  t.throws(() => writeStateSync(store, state(store, id, 'running'), 4242), { code: 'ERR_STORE_IO', message: /state\.json/ });
  t.throws(() => writeStateSync(store, state(store, id, 'running'), 4242), { message: new RegExp(store.root) });
});
