import t from 'tap';
import { normaliseHeader } from '../src/pack.js';
import { type ExportImage, mergeImages, repoTag, repositoriesFile } from '../src/tree.js';

t.test('repoTag: Docker short names, none without a tag', async (t) => {
  const cases: [string, string | undefined][] = [
    ['docker.io/library/busybox:latest', 'busybox:latest'],
    ['docker.io/someone/app:v1', 'someone/app:v1'],
    ['localhost:5000/app:dev', 'localhost:5000/app:dev'],
    ['docker.io/library/busybox@sha256:' + 'a'.repeat(64), undefined],
  ];
  for (const [name, expected] of cases) t.equal(repoTag(name), expected, name);
});

const image = (digest: string, names: string[], top = 'sha256:' + 'c'.repeat(64)): ExportImage =>
  ({ record: { digest, layers: [{ diffID: top }] }, manifest: { layers: [] }, names }) as unknown as ExportImage;

t.test('mergeImages: one entry per manifest, every name once, in order', async (t) => {
  const merged = mergeImages([image('sha256:1', ['a:1']), image('sha256:2', ['b:1']), image('sha256:1', ['a:2', 'a:1']), image('sha256:1', [])]);
  t.same(
    merged.map((m) => [m.record.digest, m.names]),
    [
      ['sha256:1', ['a:1', 'a:2']],
      ['sha256:2', ['b:1']],
    ],
  );
});

t.test('repositoriesFile: repository → tag → top layer id, digest-only names left out', async (t) => {
  const top = 'sha256:' + 'd'.repeat(64);
  t.same(repositoriesFile([image('sha256:1', ['docker.io/library/a:1', 'localhost:5000/x/y:2', `docker.io/library/a@sha256:${'e'.repeat(64)}`], top)]), {
    a: { '1': 'd'.repeat(64) },
    'localhost:5000/x/y': { '2': 'd'.repeat(64) },
  });
});

t.test('normaliseHeader: owner, mtime and mode fixed', async (t) => {
  const cases: [string, number][] = [
    ['file', 0o644],
    ['directory', 0o755],
  ];
  for (const [type, mode] of cases) {
    const header = normaliseHeader({ name: 'x', type, mode: 0o4777, uid: 1000, gid: 50, uname: 'app', gname: 'staff', mtime: new Date() });
    t.same(header, { name: 'x', type, mode, uid: 0, gid: 0, uname: '', gname: '', mtime: new Date(0) }, type);
  }
});
