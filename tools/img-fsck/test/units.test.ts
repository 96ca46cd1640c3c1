/**
 * img-fsck's pure parts, table-driven: a layer meta.json judged against its
 * directory's chain ID, a broken index.json salvaged, the tree checksum
 * (lib-common tree-digest) seeing each kind of change and nothing else, and
 * the blob reader on what may stand where a blob should be.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { chainIDs } from '@conveyor/lib-common/digest';
import { isTreeDigest, treeDigest } from '@conveyor/lib-common/tree-digest';
import { checkBlob } from '../src/blob-read.js';
import { salvageEntries } from '../src/index-file.js';
import { metaProblem } from '../src/layers.js';
import { manifestMediaType } from '../src/rebuild.js';
import { deadTemp } from '../src/temp-files.js';

const sha = (text: string) => `sha256:${createHash('sha256').update(text).digest('hex')}`;

t.test('metaProblem: a meta.json must name its own chain, and the chain must follow', async (t) => {
  const diff = sha('diff');
  const parent = sha('parent');
  const [, top] = chainIDs([parent, diff]);
  const hexOf = (d: string) => d.slice(7);
  const cases: [string, Record<string, unknown>, string, RegExp | undefined][] = [
    ['bottom layer', { chainID: diff, diffID: diff, parentChainID: null }, hexOf(diff), undefined],
    ['upper layer', { chainID: top, diffID: diff, parentChainID: parent }, hexOf(top), undefined],
    ['written before parents were recorded', { chainID: top, diffID: diff }, hexOf(top), undefined],
    ['another chain ID than its directory', { chainID: diff, diffID: diff, parentChainID: null }, hexOf(top), /names chain ID/],
    ['a chain that does not follow', { chainID: top, diffID: diff, parentChainID: sha('other') }, hexOf(top), /does not follow/],
    ['bottom layer whose chain is not its diff', { chainID: top, diffID: diff, parentChainID: null }, hexOf(top), /does not follow/],
    ['diff ID not a digest', { chainID: top, diffID: '../../etc', parentChainID: parent }, hexOf(top), /not a digest/],
    ['parent not a digest', { chainID: top, diffID: diff, parentChainID: '/etc' }, hexOf(top), /not a digest/],
    ['blob digest a path', { chainID: diff, diffID: diff, parentChainID: null, digest: '/etc/passwd' }, hexOf(diff), /not a digest/],
  ];
  for (const [name, meta, hex, expected] of cases) {
    const why = metaProblem(meta, hex);
    if (expected) t.match(why, expected, name);
    else t.equal(why, undefined, name);
  }
});

t.test('salvageEntries keeps the image descriptors a broken index.json still holds', async (t) => {
  const entry = (n: number, mediaType = 'application/vnd.oci.image.manifest.v1+json') => ({
    mediaType,
    digest: sha(`m${n}`),
    size: 100 + n,
    annotations: { 'org.opencontainers.image.ref.name': `r${n}:latest` },
  });
  const good = JSON.stringify({ schemaVersion: 2, manifests: [entry(1), entry(2), entry(3)] }, null, 2);
  const lines = good.split('\n');
  const cases: [string, string, number][] = [
    ['a garbage line between entries', [...lines.slice(0, 11), 'garbage!', ...lines.slice(11)].join('\n'), 3],
    ['torn at the end', good.slice(0, good.length - 40), 2],
    ['garbage inside one entry', good.replace('"size": 102', '"size": 1#2'), 2],
    ['not JSON at all', 'hello', 0],
    ['an entry of another media type', JSON.stringify({ manifests: [entry(1, 'text/plain'), entry(2)] }).slice(0, -1), 1],
    ['entries with a path for a digest', good.replaceAll(sha('m1'), 'sha256:../../etc/passwd').slice(0, -2), 2],
  ];
  for (const [name, text, count] of cases) {
    const found = salvageEntries(text);
    t.equal(found.length, count, name);
    for (const d of found) t.match(d, { annotations: { 'org.opencontainers.image.ref.name': /^r\d:latest$/ } }, `${name}: names kept`);
  }
});

t.test('treeDigest sees every kind of change, and nothing else', async (t) => {
  const base = t.testdir({});
  const make = (dir: string) => {
    mkdirSync(join(dir, 'etc'), { recursive: true });
    writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0\n');
    writeFileSync(join(dir, 'bin'), 'ELF');
    chmodSync(join(dir, 'bin'), 0o4755);
    symlinkSync('/bin', join(dir, 'sbin'));
    const odd = Buffer.concat([Buffer.from(`${dir}/`), Buffer.from([0x6e, 0xff, 0x2e, 0x74])]);
    writeFileSync(odd, 'not utf-8 name');
    utimesSync(odd, 1_000_000, 1_000_000);
    utimesSync(join(dir, 'etc', 'passwd'), 1_000_000, 1_000_000);
    utimesSync(join(dir, 'bin'), 1_000_000, 1_000_000);
  };
  const fresh = (name: string) => {
    const dir = join(base, name);
    make(dir);
    return dir;
  };
  const reference = await treeDigest(fresh('reference'));
  t.ok(isTreeDigest(reference), 'a well-formed record');
  t.equal(reference.entries, 6, 'the root and five entries');
  t.equal((await treeDigest(fresh('same'))).digest, reference.digest, 'the same tree made again: the same checksum');

  const changes: [string, (dir: string) => void][] = [
    ['content appended', (d) => writeFileSync(join(d, 'etc', 'passwd'), 'root:x:0:0\nevil\n', { flag: 'w' })],
    ['same size, new mtime', (d) => utimesSync(join(d, 'etc', 'passwd'), 2_000_000, 2_000_000)],
    ['a file added', (d) => writeFileSync(join(d, 'etc', 'shadow'), '')],
    ['a file removed', (d) => rmSync(join(d, 'bin'))],
    ['setuid dropped', (d) => chmodSync(join(d, 'bin'), 0o755)],
    ['owner changed', (d) => execFileSync('chown', ['-h', '1000:1000', join(d, 'bin')])],
    [
      'symlink retargeted',
      (d) => {
        rmSync(join(d, 'sbin'));
        symlinkSync('/usr/bin', join(d, 'sbin'));
      },
    ],
    ['a file renamed', (d) => renameSync(join(d, 'bin'), join(d, 'bin2'))],
    ['a directory chmod', (d) => chmodSync(join(d, 'etc'), 0o700)],
  ];
  for (const [name, change] of changes) {
    const dir = fresh(name.replace(/\W/g, '-'));
    change(dir);
    t.not((await treeDigest(dir)).digest, reference.digest, name);
  }
  const read = fresh('read');
  readFileSync(join(read, 'etc', 'passwd'));
  t.equal((await treeDigest(read)).digest, reference.digest, 'reading (atime) changes nothing');
  await t.rejects(treeDigest(join(base, 'reference', 'bin')), { code: 'ENOTDIR' }, 'the root must be a directory');
});

t.test('checkBlob: what may stand where a blob should be', async (t) => {
  const dir = t.testdir({ outside: 'secret\n', dir: {} });
  const good = join(dir, 'good');
  writeFileSync(good, 'content');
  symlinkSync(join(dir, 'outside'), join(dir, 'link'));
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  const cases: [string, string, Parameters<typeof checkBlob>[2], Record<string, unknown>][] = [
    ['a good blob', good, {}, { kind: 'ok', size: 7 }],
    ['kept when asked', good, { keep: true }, { kind: 'ok', data: Buffer.from('content') }],
    ['another size than its descriptor', good, { expectedSize: 8 }, { kind: 'corrupt', actual: /7 bytes where its descriptor says 8/ }],
    ['missing', join(dir, 'nope'), {}, { kind: 'missing' }],
    ['a symlink (not followed)', join(dir, 'link'), {}, { kind: 'not-file', what: 'a symlink' }],
    ['a directory', join(dir, 'dir'), {}, { kind: 'not-file', what: 'a directory' }],
    ['a fifo (no blocking open)', join(dir, 'fifo'), {}, { kind: 'not-file', what: 'a fifo' }],
  ];
  for (const [name, path, options, expected] of cases) t.match(await checkBlob(path, sha('content'), options), expected, name);
  t.match(await checkBlob(good, sha('other')), { kind: 'corrupt', actual: /hashes to sha256:/ }, 'another digest');
});

t.test('deadTemp: writeFileAtomic temporary files whose writer is gone', async (t) => {
  const dead = spawnSync('true').pid as number;
  const cases: [string, boolean][] = [
    [`index.json.${dead}.abcd1234.tmp`, true],
    [`state.json.${dead}.0f.tmp`, true],
    [`index.json.${process.pid}.abcd1234.tmp`, false],
    [`index.json.0.abcd1234.tmp`, true],
    ['index.json', false],
    ['index.json.broken', false],
    [`other.json.${dead}.abcd1234.tmp`, false],
    [`index.json.${dead}.ABCD.tmp`, false],
  ];
  for (const [name, expected] of cases) t.equal(deadTemp(name), expected, name);
});

t.test('manifestMediaType: which blobs are images of their own', async (t) => {
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha('c'), size: 1 };
  const cases: [string, unknown, string | undefined][] = [
    [
      'an OCI manifest',
      { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [] },
      'application/vnd.oci.image.manifest.v1+json',
    ],
    [
      'a Docker manifest',
      { schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', config, layers: [] },
      'application/vnd.docker.distribution.manifest.v2+json',
    ],
    ['an OCI manifest without mediaType', { schemaVersion: 2, config, layers: [] }, 'application/vnd.oci.image.manifest.v1+json'],
    ['an index without mediaType', { schemaVersion: 2, manifests: [] }, 'application/vnd.oci.image.index.v1+json'],
    ['a config', { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }, undefined],
    ['schema 1', { schemaVersion: 1, fsLayers: [] }, undefined],
    ['another media type', { schemaVersion: 2, mediaType: 'application/vnd.oci.image.config.v1+json', config, layers: [] }, undefined],
    ['not an object', [1, 2], undefined],
  ];
  for (const [name, value, expected] of cases) t.equal(manifestMediaType(value), expected, name);
});
