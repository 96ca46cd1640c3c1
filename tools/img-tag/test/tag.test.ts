/**
 * img-tag on a store skopeo wrote: new names point at the same manifest (and
 * skopeo reads them back), several at once, a moved name, a source pinned by
 * digest, parallel taggers under the index lock; and the refusals: an
 * unknown source, a target pinned by digest, bad references, missing
 * arguments, unknown flags. targetNames table-driven.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../test/helpers/fixtures.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool, runToolSync, type ToolResult } from '../../../test/helpers/tools.js';
import { targetNames } from '../src/tag.js';

const root = tempStore('conveyor-tag-');
t.teardown(() => removeStore(root));
importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/app:dev');
importToStore(`${busyboxLayout()}:v2`, root, 'docker.io/library/app:v2');

const REF = 'org.opencontainers.image.ref.name';
const entries = (): any[] => JSON.parse(readFileSync(join(root, 'index.json'), 'utf8')).manifests;
const entry = (name: string) => entries().find((m) => m.annotations?.[REF] === name);
const dev = entry('docker.io/library/app:dev');
const tag = (...args: string[]): ToolResult => runToolSync('img-tag', ['--root', root, '--log-format=json', ...args]);
const errorOf = (r: ToolResult) => r.logs.find((l) => l.level === 'error');

t.test('a new name points at the same manifest; skopeo reads it', async (t) => {
  const r = tag('app:dev', 'localhost:5000/team/app:1.2');
  t.equal(r.code, 0, r.stderr);
  t.match(r.records, [{ type: 'image', v: 1, ref: 'localhost:5000/team/app:1.2', digest: dev.digest }]);
  t.match(entry('localhost:5000/team/app:1.2'), { digest: dev.digest, mediaType: dev.mediaType, size: dev.size });
  t.equal(entry('localhost:5000/team/app:1.2').annotations['io.containerd.image.name'], 'localhost:5000/team/app:1.2');
  t.ok(entry('docker.io/library/app:dev'), 'the source keeps its name');
  const inspected = JSON.parse(execFileSync('skopeo', ['inspect', `oci:${root}:localhost:5000/team/app:1.2`], { encoding: 'utf8' }));
  t.equal(inspected.Digest, dev.digest);
});

t.test('several names at once; a name that pointed elsewhere is moved', async (t) => {
  const r = tag('app:v2', 'x/one', 'x/two:t', 'localhost:5000/team/app:1.2');
  t.equal(r.code, 0, r.stderr);
  t.same(
    r.records.map((x) => x.ref),
    ['docker.io/x/one:latest', 'docker.io/x/two:t', 'localhost:5000/team/app:1.2'],
  );
  const v2 = entry('docker.io/library/app:v2');
  t.equal(entry('localhost:5000/team/app:1.2').digest, v2.digest);
  t.equal(entries().filter((m) => m.annotations?.[REF] === 'localhost:5000/team/app:1.2').length, 1, 'one entry per name');
});

t.test('a source pinned by digest: the repository entry with that digest', async (t) => {
  const r = tag(`app@${dev.digest}`, 'app:known-good');
  t.equal(r.code, 0, r.stderr);
  t.equal(entry('docker.io/library/app:known-good').digest, dev.digest);
});

t.test('other annotations of the entry (index digest, platform) go with the new name', async (t) => {
  const other = tempStore('conveyor-tag-ann-');
  t.teardown(() => removeStore(other));
  importToStore(`${busyboxLayout()}:latest`, other, 'docker.io/library/bb:1');
  const file = join(other, 'index.json');
  const index = JSON.parse(readFileSync(file, 'utf8'));
  index.manifests[0].annotations['io.conveyor.index.digest'] = `sha256:${'c'.repeat(64)}`;
  writeFileSync(file, JSON.stringify(index));
  const r = runToolSync('img-tag', ['--root', other, 'bb:1', 'bb:2']);
  t.equal(r.code, 0, r.stderr);
  const copy = JSON.parse(readFileSync(file, 'utf8')).manifests.find((m: any) => m.annotations[REF] === 'docker.io/library/bb:2');
  t.equal(copy.annotations['io.conveyor.index.digest'], `sha256:${'c'.repeat(64)}`);
});

t.test('parallel taggers: every name lands (index.json under the lock)', async (t) => {
  const runs = await Promise.all(Array.from({ length: 6 }, (_, i) => runTool('img-tag', ['--root', root, 'app:dev', `par/app:${i}`])));
  t.same(
    runs.map((r) => r.code),
    [0, 0, 0, 0, 0, 0],
  );
  for (let i = 0; i < 6; i++) t.ok(entry(`docker.io/par/app:${i}`), `par/app:${i}`);
});

t.test('refusals', async (t) => {
  const before = readFileSync(join(root, 'index.json'), 'utf8');
  const cases: { name: string; args: string[]; code: number; error: string }[] = [
    { name: 'unknown source', args: ['nope:1', 'x:1'], code: 1, error: 'ERR_IMAGE_NOT_FOUND' },
    { name: 'digest of another repository', args: [`other@${dev.digest}`, 'x:1'], code: 1, error: 'ERR_IMAGE_NOT_FOUND' },
    { name: 'target pinned by digest', args: ['app:dev', `x@${dev.digest}`], code: 2, error: 'ERR_REF_INVALID' },
    { name: 'malformed target', args: ['app:dev', 'Bad/Name'], code: 2, error: 'ERR_REF_INVALID' },
    { name: 'malformed source', args: ['../etc', 'x:1'], code: 2, error: 'ERR_REF_INVALID' },
    { name: 'no target', args: ['app:dev'], code: 2, error: 'ERR_USAGE' },
    { name: 'no arguments', args: [], code: 2, error: 'ERR_USAGE' },
    { name: 'unknown flag', args: ['--force', 'app:dev', 'x:1'], code: 2, error: 'ERR_USAGE' },
  ];
  // In parallel: each is a separate process on the same store, and none may write.
  const results = await Promise.all(cases.map((c) => runTool('img-tag', ['--root', root, '--log-format=json', ...c.args])));
  for (const [i, c] of cases.entries()) {
    const r = results[i];
    t.equal(r.code, c.code, `${c.name}: exit ${c.code}`);
    t.equal(errorOf(r)?.code, c.error, `${c.name}: ${c.error}`);
    t.equal(r.stdout, '', `${c.name}: no record`);
  }
  t.equal(readFileSync(join(root, 'index.json'), 'utf8'), before, 'index.json untouched');
});

t.test('targetNames', async (t) => {
  const cases: [string[], string[] | string][] = [
    [['app'], ['docker.io/library/app:latest']],
    [['localhost:5000/a/b:1'], ['localhost:5000/a/b:1']],
    [
      ['registry.example.com/team/app:1.2', 'x'],
      ['registry.example.com/team/app:1.2', 'docker.io/library/x:latest'],
    ],
    [[`app@sha256:${'a'.repeat(64)}`], 'ERR_REF_INVALID'],
    [[`app:1@sha256:${'a'.repeat(64)}`], 'ERR_REF_INVALID'],
    [['UPPER'], 'ERR_REF_INVALID'],
  ];
  for (const [input, expected] of cases) {
    if (typeof expected === 'string') t.throws(() => targetNames(input), { code: expected }, input.join(' '));
    else t.same(targetNames(input), expected, input.join(' '));
  }
});
