/**
 * Tar read as Go's archive/tar reads it (issue 7): hand-made archives whose
 * bytes two readers could see differently. Each case applies one layer in
 * flat mode (in process) or through the CLI (exit codes, staging) and checks
 * the tree, or the error code, against what Go (and Docker) would do.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runToolSync } from '../../../test/helpers/tools.js';
import { Applier } from '../dist/apply/applier.js';
import { applyLayer } from '../dist/read-layer.js';
import { END, block, data, fileEntry, pax } from './helpers/tars.js';

const L = (s: string) => Buffer.from(s, 'latin1');
/** Directory listing as latin1 byte strings (exact bytes). */
const ls = (dir: string) => readdirSync(L(dir), { encoding: 'latin1' }).sort();

interface Case {
  name: string;
  tar: () => Buffer;
  mode?: 'flat' | 'overlay';
  code?: string;
  /** Part of the error message. */
  message?: RegExp;
  check?: (t: Tap.Test, root: string) => void;
}

const sym = (name: string, target: string, size: number) => block({ name, type: '2', linkname: target, size });

const cases: Case[] = [
  {
    name: 'a symlink with a size field has no data: the entry "inside" it is a real entry, as Go reads it',
    tar: () => Buffer.concat([sym('link', 'target', 1024), fileEntry('hidden', 'seen by Go'), fileEntry('after', 'x'), END]),
    check: (t, root) => {
      t.strictSame(ls(root), ['after', 'hidden', 'link']);
      t.equal(readFileSync(join(root, 'hidden'), 'utf8'), 'seen by Go');
    },
  },
  ...(['1', '3', '4', '5', '6'] as const).map(
    (type): Case => ({
      name: `header-only type '${type}' with a size field has no data`,
      tar: () =>
        Buffer.concat([
          type === '1' ? fileEntry('a', 'a') : Buffer.alloc(0),
          block({ name: type === '5' ? 'd/' : 'node', type, size: 600, linkname: type === '1' ? 'a' : '' }),
          fileEntry('hidden', 'h'),
          END,
        ]),
      check: (t, root) => t.ok(ls(root).includes('hidden'), 'the following header is read as an entry'),
    }),
  ),
  {
    name: "a '0' entry with a trailing slash is a file with data (only '\\0' means a directory, as in Go)",
    tar: () => Buffer.concat([fileEntry('f/', 'content'), END]),
    check: (t, root) => {
      t.ok(lstatSync(join(root, 'f')).isFile());
      t.equal(readFileSync(join(root, 'f'), 'utf8'), 'content');
    },
  },
  {
    name: "a '\\0' entry with a trailing slash is a directory without data",
    tar: () => Buffer.concat([block({ name: 'd/', type: 0, size: 512 }), fileEntry('d/in', 'x'), END]),
    check: (t, root) => t.equal(readFileSync(join(root, 'd', 'in'), 'utf8'), 'x'),
  },
  {
    name: 'nothing after the end-of-archive marker is applied',
    tar: () => Buffer.concat([fileEntry('before', 'b'), END, fileEntry('after', 'a'), END]),
    check: (t, root) => t.strictSame(ls(root), ['before']),
  },
  {
    name: 'one zero block then the end of the stream is a valid end',
    tar: () => Buffer.concat([fileEntry('only', 'o'), Buffer.alloc(512)]),
    check: (t, root) => t.strictSame(ls(root), ['only']),
  },
  {
    name: 'a zero block followed by a header is refused (Go: ErrHeader)',
    tar: () => Buffer.concat([fileEntry('a', 'a'), Buffer.alloc(512), fileEntry('b', 'b'), END]),
    code: 'ERR_LAYER_INVALID',
  },
  {
    name: 'a PAX header over 1 MiB is refused before it is buffered',
    tar: () => Buffer.concat([block({ name: 'PaxHeaders/x', type: 'x', size: 1024 * 1024 + 1 }), Buffer.alloc(4096)]),
    code: 'ERR_LAYER_TOO_LARGE',
  },
  {
    name: 'a GNU long name over 1 MiB is refused',
    tar: () => Buffer.concat([block({ name: '././@LongLink', type: 'L', size: 2 * 1024 * 1024, format: 'gnu' }), Buffer.alloc(4096)]),
    code: 'ERR_LAYER_TOO_LARGE',
  },
  {
    name: 'a PAX header of just under 1 MiB is read',
    tar: () => Buffer.concat([pax([['comment', 'c'.repeat(1024 * 1024 - 20)]]), fileEntry('ok', 'ok'), END]),
    check: (t, root) => t.strictSame(ls(root), ['ok']),
  },
  {
    name: 'a GNU long name wins over a PAX path (Go applies it last)',
    tar: () => {
      const long = Buffer.from('gnu-name\0');
      return Buffer.concat([
        pax([['path', 'pax-name']]),
        block({ name: '././@LongLink', type: 'L', size: long.length, format: 'gnu' }),
        data(long),
        fileEntry('ustar-name', 'x'),
        END,
      ]);
    },
    check: (t, root) => t.strictSame(ls(root), ['gnu-name']),
  },
  {
    name: 'a global PAX header applies to no entry',
    tar: () => Buffer.concat([pax([['path', 'renamed']], 'g'), pax([['uid', '7']]), fileEntry('plain', 'x'), END]),
    check: (t, root) => t.strictSame(ls(root), ['plain']),
  },
  {
    name: 'an empty PAX header replaces the previous one (no stale path)',
    tar: () => Buffer.concat([pax([['path', 'stale']]), block({ name: 'PaxHeaders/x', type: 'x', size: 0 }), fileEntry('real', 'x'), END]),
    check: (t, root) => t.strictSame(ls(root), ['real']),
  },
  ...(
    [
      ['Latin-1', L('caf\xe9')],
      ['KOI8-R', Buffer.from([0xf0, 0xd2, 0xc9, 0xd7, 0xc5, 0xd4])],
      ['EUC-JP', Buffer.from([0xc6, 0xfc, 0xcb, 0xdc])],
    ] as const
  ).map(
    ([label, bytes]): Case => ({
      name: `a ${label} name is created byte for byte (header, PAX path, symlink target, hardlink, directory)`,
      tar: () =>
        Buffer.concat([
          fileEntry(bytes, 'plain'),
          pax([['path', Buffer.concat([L('pax-'), bytes])]]),
          fileEntry('ignored', 'via pax'),
          block({ name: Buffer.concat([L('sym-'), bytes]), type: '2', linkname: bytes }),
          block({ name: Buffer.concat([L('hard-'), bytes]), type: '1', linkname: bytes }),
          block({ name: Buffer.concat([L('dir-'), bytes, L('/')]), type: '5' }),
          fileEntry(Buffer.concat([L('dir-'), bytes, L('/in')]), 'in'),
          END,
        ]),
      check: (t, root) => {
        const name = bytes.toString('latin1');
        t.strictSame(ls(root), [name, `dir-${name}`, `hard-${name}`, `pax-${name}`, `sym-${name}`].sort());
        t.equal(readFileSync(Buffer.concat([L(`${root}/`), bytes]), 'utf8'), 'plain');
        t.equal(readFileSync(Buffer.concat([L(`${root}/pax-`), bytes]), 'utf8'), 'via pax');
        t.strictSame(readlinkSync(Buffer.concat([L(`${root}/sym-`), bytes]), { encoding: 'buffer' }), bytes);
        t.equal(statSync(Buffer.concat([L(`${root}/hard-`), bytes])).ino, statSync(Buffer.concat([L(`${root}/`), bytes])).ino);
        t.equal(readFileSync(Buffer.concat([L(`${root}/dir-`), bytes, L('/in')]), 'utf8'), 'in');
      },
    }),
  ),
  {
    name: 'two names that are not UTF-8 never collapse into one file',
    tar: () => Buffer.concat([fileEntry(L('x\xe9'), 'e-acute'), fileEntry(L('x\xff'), 'y-umlaut'), END]),
    check: (t, root) => {
      t.strictSame(ls(root), ['x\xe9', 'x\xff']);
      t.equal(readFileSync(L(`${root}/x\xff`), 'utf8'), 'y-umlaut');
    },
  },
  {
    name: 'overlay mode: a whiteout, a fifo and an xattr on names that are not UTF-8',
    mode: 'overlay',
    tar: () =>
      Buffer.concat([
        block({ name: L('d\xe9/'), type: '5' }),
        fileEntry(L('d\xe9/.wh.gone\xff'), ''),
        block({ name: L('d\xe9/fifo\xfe'), type: '6', mode: 0o640 }),
        pax([['SCHILY.xattr.user.k', 'v']]),
        fileEntry(L('d\xe9/attr\xfd'), 'x'),
        END,
      ]),
    check: (t, root) => {
      const dir = `${root}/d\xe9`;
      t.strictSame(ls(dir), ['attr\xfd', 'fifo\xfe', 'gone\xff']);
      t.ok(lstatSync(L(`${dir}/gone\xff`)).isCharacterDevice(), 'whiteout as 0/0 char device');
      t.ok(lstatSync(L(`${dir}/fifo\xfe`)).isFIFO());
      // getfattr takes text arguments: dump the tree (it prints names as raw bytes) and find the name.
      const dump = execFileSync('getfattr', ['-R', '-h', '-d', '-m', 'user.', '.'], { cwd: root, encoding: 'latin1' });
      t.ok(dump.includes('# file: d\xe9/attr\xfd\nuser.k="v"'), `xattr set on the exact name (${JSON.stringify(dump)})`);
      t.strictSame(ls(root), ['d\xe9'], 'no temporary directory left');
    },
  },
  {
    name: 'negative and pre-1970 mtimes are kept (base-256 header, PAX with a fraction)',
    tar: () =>
      Buffer.concat([
        fileEntry('old', 'x', { mtime: -86400 }),
        pax([['mtime', '-1000000000.5']]),
        fileEntry('older', 'x'),
        block({ name: 'dir/', type: '5', mtime: -3600 }),
        block({ name: 'sym', type: '2', linkname: 'old', mtime: -7200 }),
        END,
      ]),
    check: (t, root) => {
      t.equal(lstatSync(join(root, 'old')).mtimeMs, -86400_000);
      t.equal(lstatSync(join(root, 'older')).mtimeMs, -1000000000_500);
      t.equal(lstatSync(join(root, 'dir')).mtimeMs, -3600_000);
      t.equal(lstatSync(join(root, 'sym')).mtimeMs, -7200_000);
    },
  },
  ...(
    [
      ['uid=', [['uid', '']]],
      ['mtime=1e300', [['mtime', '1e300']]],
      ['size=12abc', [['size', '12abc']]],
      ['gid=0x10', [['gid', '0x10']]],
      ['atime=1.2.3', [['atime', '1.2.3']]],
      ['uid=-1', [['uid', '-1']]],
    ] as [string, [string, string][]][]
  ).map(
    ([label, records]): Case => ({
      name: `PAX ${label} is refused`,
      tar: () => Buffer.concat([pax(records), fileEntry('f', 'x'), END]),
      code: 'ERR_LAYER_INVALID',
    }),
  ),
  {
    name: 'an xattr key with a NUL is refused, not truncated',
    tar: () => Buffer.concat([pax([['SCHILY.xattr.user.a\0security.capability', 'x']]), fileEntry('f', 'x'), END]),
    code: 'ERR_LAYER_INVALID',
  },
  {
    name: 'a PAX path with a NUL is refused',
    tar: () => Buffer.concat([pax([['path', 'a\0b']]), fileEntry('f', 'x'), END]),
    code: 'ERR_LAYER_INVALID',
  },
  {
    name: 'PAX records padded with NULs are refused (Go: ErrHeader)',
    tar: () => {
      const d = Buffer.concat([Buffer.from('11 uid=123\n'), Buffer.alloc(20)]);
      return Buffer.concat([block({ name: 'PaxHeaders/x', type: 'x', size: d.length }), data(d), fileEntry('f', 'x'), END]);
    },
    code: 'ERR_LAYER_INVALID',
  },
  {
    name: 'an octal field with trailing garbage is refused (tar-stream read "12x" as 10)',
    tar: () => {
      const b = block({ name: 'f', size: 1 });
      b.write('0000000001x\0', 124, 'latin1');
      b.write('        ', 148, 'latin1');
      let sum = 0;
      for (const byte of b) sum += byte;
      b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      return Buffer.concat([b, data('x'), END]);
    },
    code: 'ERR_LAYER_INVALID',
  },
  {
    name: 'a V7 header (no magic) is read, as Go does',
    tar: () => Buffer.concat([fileEntry('v7file', 'v7', { format: 'v7' }), END]),
    check: (t, root) => t.equal(readFileSync(join(root, 'v7file'), 'utf8'), 'v7'),
  },
  {
    name: "old GNU sparse (type 'S') is refused, naming the type",
    tar: () => Buffer.concat([block({ name: 'sparse', type: 'S', size: 0, format: 'gnu' }), END]),
    code: 'ERR_LAYER_INVALID',
    message: /type 'S'/,
  },
  {
    name: 'an unknown type is refused, naming it',
    tar: () => Buffer.concat([block({ name: 'v', type: 'V', size: 0 }), END]),
    code: 'ERR_LAYER_INVALID',
    message: /'V'/,
  },
  ...(
    [
      [
        '0.0',
        [
          ['GNU.sparse.size', '10'],
          ['GNU.sparse.numblocks', '1'],
          ['GNU.sparse.offset', '0'],
          ['GNU.sparse.numbytes', '1'],
        ],
      ],
      [
        '0.1',
        [
          ['GNU.sparse.size', '10'],
          ['GNU.sparse.numblocks', '1'],
          ['GNU.sparse.map', '0,1'],
          ['GNU.sparse.name', 'real'],
        ],
      ],
      [
        '1.0',
        [
          ['GNU.sparse.major', '1'],
          ['GNU.sparse.minor', '0'],
          ['GNU.sparse.name', 'real'],
          ['GNU.sparse.realsize', '10'],
        ],
      ],
    ] as [string, [string, string][]][]
  ).map(
    ([version, records]): Case => ({
      name: `a PAX GNU sparse ${version} file is refused, never applied as a wrong file`,
      tar: () => Buffer.concat([pax(records), fileEntry('GNUSparseFile.0/real', '1\n0\n1\n'.padEnd(512, '\0') + 'x'), END]),
      code: 'ERR_LAYER_INVALID',
      message: version === '1.0' ? /sparse file \(PAX format 1\.0\)/ : /sparse file \(PAX format 0\.0 or 0\.1\)/,
    }),
  ),
  {
    name: 'an absolute hardlink target resolves against the layer root (kaniko)',
    tar: () => Buffer.concat([fileEntry('etc/passwd', 'root:x:0:0'), block({ name: 'link', type: '1', linkname: '/etc/passwd' }), END]),
    check: (t, root) => {
      t.equal(statSync(join(root, 'link')).ino, statSync(join(root, 'etc', 'passwd')).ino);
      t.equal(readFileSync(join(root, 'link'), 'utf8'), 'root:x:0:0');
    },
  },
  ...(['flat', 'overlay'] as const).map(
    (mode): Case => ({
      name: `${mode}: the layer's own ./ entry does not change the root's owner or mode`,
      mode,
      tar: () =>
        Buffer.concat([
          block({ name: './', type: '5', mode: 0o777, uid: 1234, gid: 1234, mtime: 1000 }),
          pax([['SCHILY.xattr.system.posix_acl_access', 'x']]),
          block({ name: '.', type: '5', mode: 0o4777 }),
          fileEntry('f', 'x'),
          END,
        ]),
      check: (t, root) => {
        const st = statSync(root);
        t.equal(st.mode & 0o7777, 0o755, 'mode kept');
        t.equal(`${st.uid}:${st.gid}`, `${process.getuid!()}:${process.getgid!()}`, 'owner kept');
        t.equal(execFileSync('getfattr', ['-h', '-d', '-m', 'system', root], { encoding: 'utf8' }), '', 'no ACL set');
      },
    }),
  ),
];

async function apply(t: Tap.Test, tar: Buffer, mode: 'flat' | 'overlay'): Promise<{ root: string; result: Promise<unknown>; warnings: string[] }> {
  const dir = t.testdir({});
  const file = join(dir, 'layer.tar');
  writeFileSync(file, tar);
  const root = join(dir, 'root');
  mkdirSync(root, { mode: 0o755 });
  const warnings: string[] = [];
  const applier = new Applier({ root, mode, rootless: false, maxBytes: 1 << 30, maxEntries: 1000, warn: (m: string) => warnings.push(m) });
  applier.beginLayer(true);
  const result = (async () => {
    try {
      await applyLayer({ path: file, label: 'test' }, applier);
      await applier.finish();
    } finally {
      await applier.close();
    }
  })();
  result.catch(() => undefined);
  return { root, result, warnings };
}

for (const c of cases) {
  t.test(c.name, async (t) => {
    const { root, result } = await apply(t, c.tar(), c.mode ?? 'flat');
    if (c.code) {
      const error = await result.then(
        () => undefined,
        (e: { code?: string; message?: string }) => e,
      );
      t.equal(error?.code, c.code, `fails with ${c.code} (${error?.message})`);
      if (c.message) t.match(error?.message, c.message);
      return;
    }
    await t.resolves(result);
    c.check?.(t, root);
  });
}

// Through the CLI: the exit status, the message and no staging left behind.
const cliCases: { name: string; tar: () => Buffer; code?: string }[] = [
  {
    name: 'a directory with a non-zero size (was: exit 13, no message)',
    tar: () => Buffer.concat([block({ name: 'd/', type: '5', size: 1000 }), fileEntry('d/f', 'x'), END]),
  },
  {
    name: 'an oversized PAX header (was: exit 13, no message)',
    tar: () => Buffer.concat([block({ name: 'PaxHeaders/x', type: 'x', size: 8 * 1024 * 1024 }), Buffer.alloc(8 * 1024 * 1024)]),
    code: 'ERR_LAYER_TOO_LARGE',
  },
  {
    name: 'a sparse file',
    tar: () =>
      Buffer.concat([
        pax([
          ['GNU.sparse.major', '1'],
          ['GNU.sparse.minor', '0'],
        ]),
        fileEntry('s', 'x'),
        END,
      ]),
    code: 'ERR_LAYER_INVALID',
  },
];

for (const c of cliCases) {
  t.test(`cli: ${c.name}`, async (t) => {
    const dir = t.testdir({});
    const file = join(dir, 'layer.tar');
    writeFileSync(file, c.tar());
    const target = join(dir, 'target');
    const run = runToolSync('layer-unpack', ['--log-format=json', '--flatten', target, file]);
    if (c.code) {
      t.equal(run.code, 1, `exit 1 (${run.stderr})`);
      t.match(run.stderr, `"code":"${c.code}"`);
    } else t.equal(run.code, 0, `exit 0 (${run.stderr})`);
    t.strictSame(
      readdirSync(dir).filter((n) => n.startsWith('.')),
      [],
      'no staging dir left',
    );
  });
}

t.test('cli: bytes after the end-of-archive marker count in the diff ID but are never applied', async (t) => {
  const dir = t.testdir({});
  const tar = Buffer.concat([fileEntry('a', 'a'), END, fileEntry('smuggled', 's'), END]);
  const file = join(dir, 'layer.tar');
  writeFileSync(file, tar);
  const target = join(dir, 'target');
  const run = runToolSync('layer-unpack', ['--flatten', target, file]);
  t.equal(run.code, 0, run.stderr);
  t.equal(JSON.parse(run.stdout).layers[0].diffID, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
  t.strictSame(ls(target), ['a']);
});
