/**
 * The control plane's pure parts, table-driven: Docker's signal forms
 * (container/stop parseSignal), the public `container` record of a state
 * (container/targets containerRecordOf), and the targets read from arguments
 * and stdin (resolved against a store of hand-written state files; no
 * container runs here).
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { parseSignal } from '../src/container/stop.js';
import { containerRecordOf, targetsOf, type TargetItem } from '../src/container/targets.js';
import type { ContainerState } from '../src/container/state.js';
import { Store } from '../src/store.js';

t.test('signals as Docker takes them', async (t) => {
  // [input, runc's argument, number, name]
  const cases: [string, string, number, string][] = [
    ['KILL', 'KILL', 9, 'SIGKILL'],
    ['SIGKILL', 'KILL', 9, 'SIGKILL'],
    ['sigterm', 'TERM', 15, 'SIGTERM'],
    ['9', 'KILL', 9, 'SIGKILL'],
    ['15', 'TERM', 15, 'SIGTERM'],
    [' HUP ', 'HUP', 1, 'SIGHUP'],
    ['USR1', 'USR1', 10, 'SIGUSR1'],
    ['6', 'ABRT', 6, 'SIGABRT'],
    ['29', 'IO', 29, 'SIGIO'],
    ['40', '40', 40, 'SIG40'],
  ];
  for (const [input, arg, number, name] of cases) t.strictSame(parseSignal(input), { arg, number, name }, input);
  for (const bad of ['', '0', '65', '-9', 'NOPE', 'SIG', 'KILL;rm', '9.5']) {
    t.throws(() => parseSignal(bad), { code: 'ERR_USAGE' }, JSON.stringify(bad));
  }
});

const root = t.testdir({ containers: {} });
const store = new Store(root);
const ID_A = `a1${'0'.repeat(62)}`;
const ID_B = `a2${'0'.repeat(62)}`;
const ID_LEFT = 'c'.repeat(64);

function state(id: string, fields: Partial<ContainerState> = {}): ContainerState {
  return {
    type: 'container',
    v: 1,
    id,
    status: 'exited',
    exitCode: 0,
    store: '/forged',
    runtime: 'runc',
    runtimeRoot: '/run/conveyor-runc',
    cgroupsPath: `/conveyor/${id}`,
    ephemeralMount: true,
    rootfs: '/x',
    ...fields,
  };
}
for (const [id, fields] of [
  [ID_A, { name: 'web', ref: 'docker.io/library/busybox:latest', image: `sha256:${'b'.repeat(64)}`, command: ['sh'] }],
  [ID_B, { name: 'db' }],
] as const) {
  mkdirSync(join(root, 'containers', id));
  writeFileSync(join(root, 'containers', id, 'state.json'), JSON.stringify(state(id, fields)));
}
mkdirSync(join(root, 'containers', ID_LEFT));

t.test('the container record: public fields, the image as a reference, the store from the store', async (t) => {
  const full = state(ID_A, {
    name: 'web',
    ref: 'docker.io/library/busybox:latest',
    image: `sha256:${'b'.repeat(64)}`,
    pid: 42,
    supervisor: { pid: 1 },
    statusDetail: 'x',
  });
  t.strictSame(containerRecordOf(store, { id: ID_A, dir: '', state: full }), {
    type: 'container',
    v: 1,
    id: ID_A,
    name: 'web',
    image: 'docker.io/library/busybox:latest',
    imageDigest: `sha256:${'b'.repeat(64)}`,
    status: 'exited',
    exitCode: 0,
    statusDetail: 'x',
    store: root,
  });
  t.strictSame(containerRecordOf(store, { id: ID_LEFT, dir: '' }), {
    type: 'container',
    v: 1,
    id: ID_LEFT,
    status: 'dead',
    statusDetail: 'no state: a ctr-spawn that did not finish',
    store: root,
  });
});

async function collect(args: string[], input?: string): Promise<TargetItem[]> {
  const items: TargetItem[] = [];
  for await (const item of targetsOf(store, args, input === undefined ? undefined : Readable.from([input]))) items.push(item);
  return items;
}
const summary = (items: TargetItem[]) =>
  items.map((i) =>
    i.kind === 'container' ? `${i.query} -> ${i.entry.id.slice(0, 2)}` : i.kind === 'failed' ? `${i.query} ! ${i.error.code}` : `pass ${i.record.type}`,
  );

t.test('targets from arguments: ids, prefixes, names, leftovers', async (t) => {
  t.strictSame(summary(await collect([ID_A, 'a2', 'web', 'a', 'nope', 'ccc', 'Web'])), [
    `${ID_A} -> a1`,
    'a2 -> a2',
    'web -> a1',
    'a ! ERR_CONTAINER_AMBIGUOUS',
    'nope ! ERR_CONTAINER_NOT_FOUND',
    'ccc -> cc',
    'Web ! ERR_CONTAINER_NOT_FOUND',
  ]);
  t.strictSame(summary(await collect(['db'], '{"type":"container","id":"x"}\n')), ['db -> a2'], 'arguments win: stdin is not read');
});

t.test('targets from stdin: records by id only, bare ids and names, other records passed through', async (t) => {
  const lines = [
    JSON.stringify({ type: 'container', v: 1, id: ID_B, bundle: '/etc', store: root }),
    JSON.stringify({ type: 'image', ref: 'x' }),
    'db',
    JSON.stringify({ type: 'container', id: '../../etc' }),
    JSON.stringify({ type: 'container', id: ID_A.toUpperCase() }),
    JSON.stringify({ type: 'container', name: 'web' }),
    JSON.stringify({ type: 'container', id: 'f'.repeat(64) }),
  ];
  t.strictSame(summary(await collect([], lines.join('\n') + '\n')), [
    'stdin:1 -> a2',
    'pass image',
    'db -> a2',
    'stdin:4 ! ERR_INPUT_RECORD',
    'stdin:5 ! ERR_INPUT_RECORD',
    'stdin:6 ! ERR_INPUT_RECORD',
    'stdin:7 ! ERR_CONTAINER_NOT_FOUND',
  ]);
  await t.rejects(
    collect([], `${lines[0]}\n{"type":\n${lines[2]}\n`),
    { code: 'ERR_INPUT_JSON', message: /^stdin:2: / },
    'a line that is not JSON ends the stream',
  );
});
