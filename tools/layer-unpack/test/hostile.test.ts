/**
 * Adversarial layers, one per attack (section 5 of the brief). Each runs
 * through the real CLI in flat mode (raw files) and, for single-layer attacks,
 * through the overlay-mode applier; each asserts the error code (or success
 * where the entry is legitimate data) and that the sentinel directory outside
 * the target is untouched and nothing is left behind.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runToolSync } from '../../../test/helpers/tools.js';
import { Applier } from '../dist/apply/applier.js';
import { applyLayer } from '../dist/read-layer.js';
import { gnuLongNameTar, gzip, makeTar, type TarEntry } from './helpers/tars.js';
import { diffSnapshots, diffTrees, readTree } from './helpers/tree.js';

interface Ctx {
  dir: string;
  outside: string;
  target: string;
}

interface Case {
  name: string;
  /** Layers, bottom first: entries, or raw bytes. */
  layers: (ctx: Ctx) => Promise<(TarEntry[] | Buffer)[]>;
  /** Expected error code; undefined = success. */
  code?: string;
  /** Run through the overlay applier too (single-layer attacks). */
  overlay?: boolean;
  flags?: string[];
  /** Extra checks on success. */
  check?: (t: Tap.Test, ctx: Ctx) => void;
}

const cases: Case[] = [
  { name: '../escape', layers: async () => [[{ name: '../escape', content: 'x' }]], code: 'ERR_LAYER_MALICIOUS', overlay: true },
  { name: '/abs/path', layers: async (c) => [[{ name: `${c.outside}/abs`, content: 'x' }]], code: 'ERR_LAYER_MALICIOUS', overlay: true },
  {
    name: 'symlink then a file through it (same layer)',
    layers: async (c) => [
      [
        { name: 'link', type: 'symlink', linkname: c.outside },
        { name: 'link/sentinel', content: 'pwned' },
      ],
    ],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  {
    name: 'symlink then a file through it (earlier layer)',
    layers: async (c) => [[{ name: 'link', type: 'symlink', linkname: c.outside }], [{ name: 'link/sentinel', content: 'pwned' }]],
    code: 'ERR_LAYER_MALICIOUS',
  },
  {
    name: 'relative symlink climbing out, then a file through it',
    layers: async () => [[{ name: 'up', type: 'symlink', linkname: '../outside' }], [{ name: 'up/new', content: 'pwned' }]],
    code: 'ERR_LAYER_MALICIOUS',
  },
  // An absolute hardlink target names a path in the layer root (as Docker reads it), never the host's.
  {
    name: 'hardlink to /etc/passwd (absent from the layer)',
    layers: async () => [[{ name: 'pw', type: 'link', linkname: '/etc/passwd' }]],
    code: 'ERR_LAYER_INVALID',
    overlay: true,
  },
  {
    name: "hardlink to /etc/passwd links the layer's own etc/passwd",
    layers: async () => [[{ name: 'etc/passwd', content: 'layer' }], [{ name: 'pw', type: 'link', linkname: '/etc/passwd' }]],
    check: (t, c) => {
      t.equal(readFileSync(join(c.target, 'pw'), 'utf8'), 'layer');
      t.equal(statSync(join(c.target, 'pw')).ino, statSync(join(c.target, 'etc', 'passwd')).ino);
    },
  },
  {
    name: 'hardlink to /../outside',
    layers: async () => [[{ name: 'pw', type: 'link', linkname: '/../outside/sentinel' }]],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  {
    name: 'hardlink to ../x',
    layers: async () => [[{ name: 'pw', type: 'link', linkname: '../outside/sentinel' }]],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  {
    name: 'hardlink through a symlinked dir',
    layers: async (c) => [
      [
        { name: 'd', type: 'symlink', linkname: c.outside },
        { name: 'x', type: 'link', linkname: 'd/sentinel' },
      ],
    ],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  { name: 'whiteout .wh...', layers: async () => [[{ name: '.wh...', content: '' }]], code: 'ERR_LAYER_MALICIOUS', overlay: true },
  { name: 'whiteout ../.wh.x', layers: async () => [[{ name: '../.wh.outside', content: '' }]], code: 'ERR_LAYER_MALICIOUS', overlay: true },
  { name: 'whiteout of the root (./.wh..)', layers: async () => [[{ name: './.wh..', content: '' }]], code: 'ERR_LAYER_MALICIOUS', overlay: true },
  { name: 'whiteout with an empty name (.wh.)', layers: async () => [[{ name: 'sub/.wh.', content: '' }]], code: 'ERR_LAYER_MALICIOUS', overlay: true },
  {
    name: 'opaque marker at the root clears lower layers only',
    layers: async () => [
      [{ name: 'lower.txt', content: 'l' }],
      [
        { name: 'upper.txt', content: 'u' },
        { name: '.wh..wh..opq', content: '' },
      ],
    ],
    check: (t, c) => {
      t.strictSame(readdirSync(c.target), ['upper.txt']);
      t.ok(statSync(c.target).isDirectory(), 'root kept');
    },
  },
  {
    name: 'PAX path with ..',
    layers: async () => [[{ name: 'innocent', content: 'x', pax: { path: '../outside/paxfile' } }]],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  {
    name: 'PAX linkpath with ..',
    layers: async () => [[{ name: 'innocent', type: 'link', linkname: 'ok', pax: { linkpath: '../outside/sentinel' } }]],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  {
    name: 'GNU long name with ..',
    layers: async () => [gnuLongNameTar(`${'a/'.repeat(60)}../../${'../'.repeat(60)}outside/gnufile`, 'x')],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  {
    name: 'a dir replaced by a symlink, then a file written under it',
    layers: async (c) => [
      [{ name: 'd', type: 'directory' }],
      [
        { name: 'd', type: 'symlink', linkname: c.outside },
        { name: 'd/sentinel', content: 'pwned' },
      ],
    ],
    code: 'ERR_LAYER_MALICIOUS',
  },
  {
    name: 'a dir replaced by a symlink in the same layer',
    layers: async (c) => [
      [
        { name: 'd', type: 'directory' },
        { name: 'd/f', content: 'f' },
        { name: 'd', type: 'symlink', linkname: c.outside },
        { name: 'd/sentinel', content: 'pwned' },
      ],
    ],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  {
    name: 'entry replacing the root with a file',
    layers: async () => [[{ name: './', type: 'symlink', linkname: '/' }]],
    code: 'ERR_LAYER_MALICIOUS',
    overlay: true,
  },
  {
    name: 'truncated archive',
    layers: async () => [(await makeTar([{ name: 'big', content: Buffer.alloc(10000, 1) }])).subarray(0, 3000)],
    code: 'ERR_LAYER_INVALID',
    overlay: true,
  },
  {
    name: 'truncated gzip',
    layers: async () => {
      const gz = gzip(
        await makeTar([
          { name: 'big', content: Buffer.alloc(100000, 7) },
          { name: 'b2', content: 'x' },
        ]),
      );
      return [gz.subarray(0, gz.length - 20)];
    },
    code: 'ERR_LAYER_INVALID',
    overlay: true,
  },
  { name: 'garbage bytes', layers: async () => [Buffer.from('this is not a tar archive at all; '.repeat(40))], code: 'ERR_LAYER_INVALID', overlay: true },
  {
    name: 'huge declared size',
    layers: async () => {
      const tar = await makeTar([{ name: 'huge', content: 'x' }]);
      // Rewrite the size field (octal, 12 bytes at 124) to 8 GiB and fix the checksum.
      const h = Buffer.from(tar);
      h.write((8 * 1024 ** 3).toString(8).padStart(11, '0') + '\0', 124, 'latin1');
      h.write('        ', 148);
      let sum = 0;
      for (let i = 0; i < 512; i++) sum += h[i];
      h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      return [h];
    },
    flags: ['--max-bytes', '1g'],
    code: 'ERR_LAYER_TOO_LARGE',
    overlay: true,
  },
  {
    name: '--max-bytes cap on file content',
    layers: async () => [
      [
        { name: 'a', content: Buffer.alloc(3000) },
        { name: 'b', content: Buffer.alloc(3000) },
      ],
    ],
    flags: ['--max-bytes', '5k'],
    code: 'ERR_LAYER_TOO_LARGE',
  },
  {
    name: 'char device entry is skipped',
    layers: async () => [
      [
        { name: 'null', type: 'character-device', devmajor: 1, devminor: 3, mode: 0o666 },
        { name: 'ok', content: 'ok' },
      ],
    ],
    check: (t, c) => {
      t.notOk(existsSync(join(c.target, 'null')), 'no device node created');
      t.equal(readFileSync(join(c.target, 'ok'), 'utf8'), 'ok');
    },
  },
  {
    name: 'trusted.overlay.opaque xattr in PAX is dropped',
    layers: async () => [[{ name: 'd', type: 'directory', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.user.keep': 'kept' } }]],
    check: (t, c) => {
      const tree = readTree(c.target);
      t.strictSame(tree.entries.get('d')?.xattrs, { 'user.keep': '0x6b657074' }, 'user.* kept, trusted.* dropped');
      const all = spawnSync('getfattr', ['-h', '-d', '-m', '-', join(c.target, 'd')], { encoding: 'utf8' }).stdout;
      t.notMatch(all, /^trusted\./m);
    },
  },
  {
    name: 'user.overlay.* xattrs (overlayfs metadata in rootless mode) are dropped',
    layers: async () => [
      [
        {
          name: 'd',
          type: 'directory',
          pax: { 'SCHILY.xattr.user.overlay.opaque': 'y', 'SCHILY.xattr.user.overlay.redirect': '/etc', 'SCHILY.xattr.user.keep': 'kept' },
        },
      ],
    ],
    check: (t, c) => {
      t.strictSame(readTree(c.target).entries.get('d')?.xattrs, { 'user.keep': '0x6b657074' }, 'only user.keep restored');
    },
  },
  {
    name: 'more than 64 KiB of xattrs on one entry',
    layers: async () => [[{ name: 'f', content: 'x', pax: { 'SCHILY.xattr.user.big': 'y'.repeat(70 * 1024) } }]],
    code: 'ERR_LAYER_TOO_LARGE',
    overlay: true,
  },
  {
    name: 'absolute symlink target kept verbatim, then replaced, never followed',
    layers: async () => [
      [
        { name: 'abs', type: 'symlink', linkname: '/etc/passwd' },
        { name: 'abs2', type: 'symlink', linkname: '/etc/passwd' },
      ],
      [{ name: 'abs', content: 'replaced' }],
    ],
    check: (t, c) => {
      t.equal(readlinkSync(join(c.target, 'abs2')), '/etc/passwd');
      t.ok(lstatSync(join(c.target, 'abs')).isFile());
      t.equal(readFileSync(join(c.target, 'abs'), 'utf8'), 'replaced');
    },
  },
  {
    name: 'a hardlink to a lower file is replaced, not written through',
    layers: async () => [[{ name: 'a', content: 'original' }], [{ name: 'b', type: 'link', linkname: 'a' }], [{ name: 'b', content: 'new' }]],
    check: (t, c) => {
      t.equal(readFileSync(join(c.target, 'a'), 'utf8'), 'original');
      t.equal(readFileSync(join(c.target, 'b'), 'utf8'), 'new');
    },
  },
  {
    name: 'ownership and setuid/sticky bits kept',
    layers: async () => [
      [
        { name: 'suid', content: '#!', mode: 0o4755, uid: 1234, gid: 5678 },
        { name: 'tmp', type: 'directory', mode: 0o1777 },
      ],
    ],
    check: (t, c) => {
      const st = statSync(join(c.target, 'suid'));
      t.equal(st.mode & 0o7777, 0o4755);
      t.equal(`${st.uid}:${st.gid}`, '1234:5678');
      t.equal(statSync(join(c.target, 'tmp')).mode & 0o7777, 0o1777);
    },
  },
];

async function setup(t: Tap.Test): Promise<Ctx> {
  const dir = t.testdir({});
  const outside = join(dir, 'outside');
  mkdirSync(join(outside, 'sub'), { recursive: true });
  writeFileSync(join(outside, 'sentinel'), 'precious\n', { mode: 0o644 });
  return { dir, outside, target: join(dir, 'target') };
}

async function writeLayers(ctx: Ctx, layers: (TarEntry[] | Buffer)[]): Promise<string[]> {
  const files: string[] = [];
  for (const [i, layer] of layers.entries()) {
    const file = join(ctx.dir, `layer${i}.tar`);
    writeFileSync(file, Buffer.isBuffer(layer) ? layer : await makeTar(layer));
    files.push(file);
  }
  return files;
}

const t0 = readTree('/etc').entries.get('passwd');

for (const c of cases) {
  t.test(`flat: ${c.name}`, async (t) => {
    const ctx = await setup(t);
    const files = await writeLayers(ctx, await c.layers(ctx));
    const before = readTree(ctx.outside);
    const run = runToolSync('layer-unpack', ['--log-format=json', ...(c.flags ?? []), '--flatten', ctx.target, ...files]);
    if (c.code) {
      t.equal(run.code, 1, 'exit 1');
      t.match(run.stderr, `"code":"${c.code}"`, `fails with ${c.code}`);
      t.equal(run.stdout, '', 'no record');
      t.notOk(existsSync(ctx.target), 'nothing left at the target');
    } else {
      t.equal(run.code, 0, `exit 0 (${run.stderr})`);
      t.equal(JSON.parse(run.stdout).dir, ctx.target);
      c.check?.(t, ctx);
    }
    t.strictSame(diffSnapshots(before, readTree(ctx.outside)), [], 'outside untouched');
    t.strictSame(
      readdirSync(ctx.dir).filter((n) => n.startsWith('.')),
      [],
      'no staging dir left',
    );
    t.strictSame(readTree('/etc').entries.get('passwd'), t0, '/etc/passwd untouched');
  });
  if (!c.overlay) continue;
  t.test(`overlay: ${c.name}`, async (t) => {
    const ctx = await setup(t);
    const layers = await c.layers(ctx);
    const files = await writeLayers(ctx, layers);
    const before = readTree(ctx.outside);
    mkdirSync(ctx.target);
    const warnings: string[] = [];
    const maxBytes = c.flags?.[0] === '--max-bytes' ? 1024 ** 3 : 64 * 1024 ** 3;
    const applier = new Applier({ root: ctx.target, mode: 'overlay', rootless: false, maxBytes, maxEntries: 1000, warn: (m: string) => warnings.push(m) });
    applier.beginLayer(true);
    const result = applyLayer({ path: files[0], label: 'test' }, applier);
    if (c.code) await t.rejects(result, { code: c.code });
    else await t.resolves(result);
    await applier.close();
    t.strictSame(diffSnapshots(before, readTree(ctx.outside)), [], 'outside untouched');
    t.strictSame(readTree('/etc').entries.get('passwd'), t0, '/etc/passwd untouched');
  });
}

t.test('the tree comparison sees differences', async (t) => {
  const ctx = await setup(t);
  mkdirSync(ctx.target);
  writeFileSync(join(ctx.target, 'sentinel'), 'precious\n', { mode: 0o600 });
  mkdirSync(join(ctx.target, 'sub'));
  t.match(diffTrees(ctx.outside, ctx.target), [/sentinel/]);
  const before = readTree(ctx.outside);
  writeFileSync(join(ctx.outside, 'sentinel'), 'pwned\n');
  t.match(diffSnapshots(before, readTree(ctx.outside)), [/sentinel/], 'a change after the snapshot is seen');
});
