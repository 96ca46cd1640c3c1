/**
 * The pure and file-level parts of volumes, table-driven: vol-ls's filters
 * and table; lib-common's volume names, mount sources, and the seeding of a
 * volume from a (hostile) image tree: owners, modes, symlinks kept as links,
 * hardlinks, a symlink out of the root, a file where a directory should be.
 */
import t from 'tap';
import { linkSync, lstatSync, mkdirSync, readdirSync, readlinkSync, statSync, symlinkSync, writeFileSync, chownSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { Store } from '@conveyor/lib-common/store';
import { isVolumeName, seedVolume, type VolumeRecord, volumeOfSource } from '@conveyor/lib-common/container/volumes';
import { matches, parseFilters } from '../src/list.js';
import { volumeTable } from '../src/table.js';

const record = (name: string, usedBy: string[]): VolumeRecord => ({
  type: 'volume',
  v: 1,
  name,
  anonymous: false,
  createdAt: '2026-11-29T10:00:00.000Z',
  mountpoint: `/s/volumes/${name}/_data`,
  usedBy,
  store: '/s',
});

t.test('filters', async (t) => {
  const cases: [string[], [string, boolean][]][] = [
    [
      [],
      [
        ['used', true],
        ['free', true],
      ],
    ],
    [
      ['dangling=true'],
      [
        ['used', false],
        ['free', true],
      ],
    ],
    [
      ['dangling=false'],
      [
        ['used', true],
        ['free', false],
      ],
    ],
    [
      ['name=fr'],
      [
        ['used', false],
        ['free', true],
      ],
    ],
    [
      ['name=us', 'name=fr'],
      [
        ['used', true],
        ['free', true],
      ],
    ],
    [
      ['name=e', 'dangling=1'],
      [
        ['used', false],
        ['free', true],
      ],
    ],
  ];
  const records = { used: record('used', ['a'.repeat(64)]), free: record('free', []) };
  for (const [filters, expected] of cases) {
    const parsed = parseFilters(filters);
    for (const [name, match] of expected) t.equal(matches(records[name as 'used' | 'free'], parsed), match, `${filters.join(' ')}: ${name}`);
  }
  for (const bad of ['dangling=maybe', 'driver=local', 'name=', 'label']) t.throws(() => parseFilters([bad]), { code: 'ERR_USAGE' }, bad);
});

t.test('table', async (t) => {
  const now = Date.parse('2026-11-29T12:00:00.000Z');
  const text = volumeTable([record('data', ['ab'.repeat(32), 'cd'.repeat(32)]), { ...record('x1', []), size: 1500 }], { size: true, now });
  t.equal(
    text,
    [
      'DRIVER   VOLUME NAME   CREATED       USED BY                     SIZE',
      'local    data          2 hours ago   abababababab,cdcdcdcdcdcd   -',
      'local    x1            2 hours ago   -                           1.50kB',
      '',
    ].join('\n'),
  );
});

t.test('volume names and mount sources', async (t) => {
  const names: [unknown, boolean][] = [
    ['data', true],
    ['a1', true],
    ['my_vol.2-x', true],
    ['a'.repeat(64), true],
    ['a', false],
    ['_data', false],
    ['.hidden', false],
    ['../etc', false],
    ['a/b', false],
    ['/abs', false],
    ['a b', false],
    ['', false],
    [42, false],
    ['a'.repeat(256), false],
  ];
  for (const [name, ok] of names) t.equal(isVolumeName(name), ok, JSON.stringify(name));
  const store = new Store('/s');
  const sources: [string, string | undefined][] = [
    ['/s/volumes/data/_data', 'data'],
    ['/s/volumes/data/_data/sub', undefined],
    ['/s/volumes/data', undefined],
    ['/s/volumes/../etc/_data', undefined],
    ['/other/volumes/data/_data', undefined],
    ['/s/containers/x/hosts', undefined],
  ];
  for (const [source, name] of sources) t.equal(volumeOfSource(store, source), name, source);
});

t.test('seeding: owners, modes, links kept; nothing from outside the root', async (t) => {
  const dir = t.testdir({ rootfs: { cache: { sub: { file: 'content' } } }, host: { secret: 'host file' }, data: {} });
  const rootfs = join(dir, 'rootfs');
  const cache = join(rootfs, 'cache');
  chownSync(join(cache, 'sub', 'file'), 1234, 5678);
  chmodSync(join(cache, 'sub'), 0o750);
  chmodSync(cache, 0o1777);
  linkSync(join(cache, 'sub', 'file'), join(cache, 'hard'));
  symlinkSync(join(dir, 'host', 'secret'), join(cache, 'abs-link'));
  symlinkSync('../../../host', join(cache, 'rel-link'));
  const data = join(dir, 'data');
  t.equal(await seedVolume(rootfs, '/cache', data), true);
  t.strictSame(readdirSync(data).sort(), ['abs-link', 'hard', 'rel-link', 'sub']);
  const file = statSync(join(data, 'sub', 'file'));
  t.strictSame([file.uid, file.gid], [1234, 5678], 'owner kept');
  t.equal(statSync(join(data, 'sub')).mode & 0o7777, 0o750, 'mode kept');
  t.equal(statSync(data).mode & 0o7777, 0o1777, "the directory's own mode goes to _data");
  t.equal(statSync(join(data, 'hard')).ino, file.ino, 'hardlinks kept');
  t.ok(lstatSync(join(data, 'abs-link')).isSymbolicLink(), 'a symlink is copied as a link, not followed');
  t.equal(readlinkSync(join(data, 'rel-link')), '../../../host');
  t.equal(await seedVolume(rootfs, '/cache', data), false, 'a volume that is not empty is not seeded again');

  // The VOLUME path itself a symlink out of the root: resolved inside it, where nothing is.
  symlinkSync(join(dir, 'host'), join(rootfs, 'evil'));
  symlinkSync('../../../../../../..' + join(dir, 'host'), join(rootfs, 'evil2'));
  for (const path of ['/evil', '/evil2', '/missing', '/../../host']) {
    const empty = join(dir, `empty-${path.replace(/\W/g, '')}`);
    mkdirSync(empty);
    t.equal(await seedVolume(rootfs, path, empty), false, `${path}: nothing copied`);
    t.strictSame(readdirSync(empty), [], path);
  }
  writeFileSync(join(rootfs, 'afile'), 'x');
  mkdirSync(join(dir, 'empty-file'));
  await t.rejects(seedVolume(rootfs, '/afile', join(dir, 'empty-file')), { code: 'ERR_SPAWN_FAILED', message: /not a directory in the image/ });
});
