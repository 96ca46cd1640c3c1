/**
 * ADD: local archives extracted (plain, gzip, bzip2, xz, known by content),
 * other files copied; hostile archives refused or kept inside the rootfs;
 * URLs fetched from a loopback server with redirect and size caps and
 * --checksum, never extracted. Every case checks that a sentinel tree
 * outside the rootfs is untouched.
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { block, data, END, fileEntry, makeTar } from '../../layer-unpack/test/helpers/tars.js';
import { diffSnapshots, readTree } from '../../layer-unpack/test/helpers/tree.js';
import { type CopyOptions, copyInto, sourcesDigest } from '../dist/copy/index.js';

interface Ctx {
  dir: string;
  context: string;
  rootfs: string;
  outside: string;
}

function setup(t: Tap.Test): Ctx {
  const dir = t.testdir({});
  const ctx = { dir, context: join(dir, 'context'), rootfs: join(dir, 'rootfs'), outside: join(dir, 'outside') };
  for (const d of [ctx.context, ctx.rootfs, ctx.outside]) mkdirSync(d);
  writeFileSync(join(ctx.outside, 'sentinel'), 'precious\n');
  mkdirSync(join(ctx.rootfs, 'etc'));
  writeFileSync(join(ctx.rootfs, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
  symlinkSync(ctx.outside, join(ctx.rootfs, 'host'));
  return ctx;
}

const add = (c: Ctx, extra: Partial<CopyOptions> & Pick<CopyOptions, 'sources' | 'dest'>): Promise<void> =>
  copyInto({ rootfs: c.rootfs, from: { root: c.context, trusted: false }, add: true, ...extra });

const read = (path: string) => readFileSync(path, 'utf8');

async function sampleTar(): Promise<Buffer> {
  return makeTar([
    { name: 'app/', type: 'directory', mode: 0o750, uid: 1234, gid: 5678 },
    { name: 'app/bin', content: '#!/bin/sh\n', mode: 0o4755, uid: 1234, gid: 5678 },
    { name: 'app/link', type: 'symlink', linkname: '/etc/passwd' },
    { name: 'app/hard', type: 'link', linkname: 'app/bin' },
    { name: 'app/dev', type: 'character-device', devmajor: 1, devminor: 3 },
    { name: 'app/fifo', type: 'fifo' },
  ]);
}

interface Case {
  name: string;
  run: (c: Ctx) => Promise<void>;
  code?: string;
  check?: (t: Tap.Test, c: Ctx) => void;
}

const checkSample = (t: Tap.Test, root: string) => {
  t.equal(read(join(root, 'app/bin')), '#!/bin/sh\n');
  t.equal(statSync(join(root, 'app/bin')).mode & 0o7777, 0o4755, 'setuid kept');
  t.equal(`${statSync(join(root, 'app/bin')).uid}:${statSync(join(root, 'app/bin')).gid}`, '1234:5678', "the archive's owner");
  t.equal(statSync(join(root, 'app')).mode & 0o7777, 0o750);
  t.equal(statSync(join(root, 'app/bin')).mtime.getTime(), 1700000000000, "the archive's mtime");
  t.equal(readlinkSync(join(root, 'app/link')), '/etc/passwd');
  t.equal(statSync(join(root, 'app/hard')).ino, statSync(join(root, 'app/bin')).ino, 'hardlink');
  t.notOk(existsSync(join(root, 'app/dev')), 'device nodes skipped');
  t.notOk(existsSync(join(root, 'app/fifo')), 'fifos skipped');
};

const cases: Case[] = [
  {
    name: 'a plain tar (any name) is extracted into dest',
    run: async (c) => {
      writeFileSync(join(c.context, 'payload.bin'), await sampleTar());
      await add(c, { sources: ['payload.bin'], dest: '/opt' });
    },
    check: (t, c) => checkSample(t, join(c.rootfs, 'opt')),
  },
  {
    name: 'gzip, bzip2 and xz tars are extracted',
    run: async (c) => {
      const tar = await sampleTar();
      writeFileSync(join(c.context, 'a.tar'), tar);
      writeFileSync(join(c.context, 'g'), gzipSync(tar));
      writeFileSync(join(c.context, 'b'), execFileSync('bzip2', ['-c', join(c.context, 'a.tar')]));
      writeFileSync(join(c.context, 'x'), execFileSync('xz', ['-c', join(c.context, 'a.tar')]));
      await add(c, { sources: ['g'], dest: '/gz/' });
      await add(c, { sources: ['b'], dest: '/bz/' });
      await add(c, { sources: ['x'], dest: '/xz/' });
    },
    check: (t, c) => {
      for (const d of ['gz', 'bz', 'xz']) checkSample(t, join(c.rootfs, d));
    },
  },
  {
    name: 'not a tar: gzip of text and a .tar.gz that is text are copied as files',
    run: async (c) => {
      writeFileSync(join(c.context, 'notes.gz'), gzipSync('just text\n'));
      writeFileSync(join(c.context, 'fake.tar.gz'), 'not an archive\n');
      await add(c, { sources: ['notes.gz', 'fake.tar.gz'], dest: '/files/' });
    },
    check: (t, c) => {
      t.same(readFileSync(join(c.rootfs, 'files/notes.gz')), gzipSync('just text\n'));
      t.equal(read(join(c.rootfs, 'files/fake.tar.gz')), 'not an archive\n');
    },
  },
  {
    name: '--chown overrides the archive owners',
    run: async (c) => {
      writeFileSync(join(c.context, 'a.tar'), await sampleTar());
      await add(c, { sources: ['a.tar'], dest: '/owned', chown: { uid: 7, gid: 8 } });
    },
    check: (t, c) => t.equal(`${statSync(join(c.rootfs, 'owned/app/bin')).uid}:${statSync(join(c.rootfs, 'owned/app/bin')).gid}`, '7:8'),
  },
  {
    name: 'COPY never extracts',
    run: async (c) => {
      writeFileSync(join(c.context, 'a.tar'), await sampleTar());
      await copyInto({ rootfs: c.rootfs, from: { root: c.context, trusted: false }, sources: ['a.tar'], dest: '/copied.tar' });
    },
    check: (t, c) => t.ok(lstatSync(join(c.rootfs, 'copied.tar')).isFile()),
  },
  // Hostile archives.
  {
    name: 'hostile: ../ in a name',
    run: async (c) => {
      writeFileSync(join(c.context, 'evil.tar'), Buffer.concat([fileEntry('../../outside/sentinel', 'pwned'), END]));
      await add(c, { sources: ['evil.tar'], dest: '/x/' });
    },
    code: 'ERR_LAYER_MALICIOUS',
  },
  {
    name: 'hostile: an absolute name lands below dest',
    run: async (c) => {
      writeFileSync(join(c.context, 'abs.tar'), Buffer.concat([fileEntry('/abs/sentinel', 'pwned'), END]));
      await add(c, { sources: ['abs.tar'], dest: '/x/' });
    },
    check: (t, c) => t.equal(read(join(c.rootfs, 'x/abs/sentinel')), 'pwned'),
  },
  {
    name: 'hostile: a symlink to a host path, then a file through it: written inside the rootfs',
    run: async (c) => {
      // tar-stream writes the long host path as a PAX linkpath.
      const tar = await makeTar([
        { name: 'link', type: 'symlink', linkname: c.outside },
        { name: 'link/sentinel', content: 'pwned' },
      ]);
      writeFileSync(join(c.context, 'evil.tar'), tar);
      await add(c, { sources: ['evil.tar'], dest: '/x/' });
    },
    check: (t, c) => t.equal(read(join(c.rootfs, c.outside, 'sentinel')), 'pwned'),
  },
  {
    name: 'hostile: a symlink climbing up, then a file through it: stays in the rootfs',
    run: async (c) => {
      const tar = Buffer.concat([block({ name: 'up', type: '2', linkname: '../../../../../../../..' }), fileEntry('up/pwn', 'pwned'), END]);
      writeFileSync(join(c.context, 'evil.tar'), tar);
      await add(c, { sources: ['evil.tar'], dest: '/x/' });
    },
    check: (t, c) => t.equal(read(join(c.rootfs, 'pwn')), 'pwned'),
  },
  {
    name: "hostile: dest through the image's link to a host path",
    run: async (c) => {
      writeFileSync(join(c.context, 'a.tar'), Buffer.concat([fileEntry('sentinel', 'pwned'), END]));
      await add(c, { sources: ['a.tar'], dest: '/host/' });
    },
    check: (t, c) => t.equal(read(join(c.rootfs, c.outside, 'sentinel')), 'pwned'),
  },
  {
    name: 'hostile: a file replacing a planted symlink is not written through',
    run: async (c) => {
      const tar = await makeTar([
        { name: 'f', type: 'symlink', linkname: `${c.outside}/sentinel` },
        { name: 'f', content: 'pwned' },
      ]);
      writeFileSync(join(c.context, 'evil.tar'), tar);
      await add(c, { sources: ['evil.tar'], dest: '/x/' });
    },
    check: (t, c) => t.equal(read(join(c.rootfs, 'x/f')), 'pwned'),
  },
  {
    name: 'hostile: a hardlink out of the destination',
    run: async (c) => {
      writeFileSync(join(c.context, 'evil.tar'), Buffer.concat([block({ name: 'h', type: '1', linkname: '../../../outside/sentinel' }), END]));
      await add(c, { sources: ['evil.tar'], dest: '/x/' });
    },
    code: 'ERR_LAYER_MALICIOUS',
  },
  {
    name: 'hostile: a hardlink through a planted symlink to a host file',
    run: async (c) => {
      const tar = await makeTar([
        { name: 'evil', type: 'symlink', linkname: c.outside },
        { name: 'h', type: 'link', linkname: 'evil/sentinel' },
      ]);
      writeFileSync(join(c.context, 'evil.tar'), tar);
      await add(c, { sources: ['evil.tar'], dest: '/x/' });
    },
    code: 'ERR_LAYER_MALICIOUS',
  },
  {
    name: 'hostile: a truncated tar',
    run: async (c) => {
      const whole = fileEntry('big', Buffer.alloc(4096, 'x'));
      writeFileSync(join(c.context, 'cut.tar'), whole.subarray(0, 1500));
      await add(c, { sources: ['cut.tar'], dest: '/x/' });
    },
    code: 'ERR_LAYER_INVALID',
  },
  {
    name: 'hostile: a truncated gzip',
    run: async (c) => {
      const gz = gzipSync(Buffer.concat([fileEntry('big', Buffer.alloc(100000, 'x')), END]));
      writeFileSync(join(c.context, 'cut.tgz'), gz.subarray(0, gz.length - 40));
      await add(c, { sources: ['cut.tgz'], dest: '/x/' });
    },
    code: 'ERR_LAYER_COMPRESSION',
  },
  {
    name: 'hostile: a gzip bomb past the cap',
    run: async (c) => {
      // 64 MiB of zeros in one entry compress to ~64 KiB.
      const header = block({ name: 'zeros', size: 64 * 1024 * 1024 });
      const bomb = gzipSync(Buffer.concat([header, Buffer.alloc(64 * 1024 * 1024), END]));
      writeFileSync(join(c.context, 'bomb.tgz'), bomb);
      await add(c, { sources: ['bomb.tgz'], dest: '/x/', limits: { maxBytes: 4 * 1024 * 1024 } });
    },
    code: 'ERR_LAYER_TOO_LARGE',
  },
  {
    name: 'hostile: too many entries',
    run: async (c) => {
      const entries = Array.from({ length: 20 }, (_, i) => fileEntry(`f${i}`, ''));
      writeFileSync(join(c.context, 'many.tar'), Buffer.concat([...entries, END]));
      await add(c, { sources: ['many.tar'], dest: '/x/', limits: { maxEntries: 10 } });
    },
    code: 'ERR_LAYER_TOO_LARGE',
  },
  {
    name: 'a directory entry over a file replaces it',
    run: async (c) => {
      mkdirSync(join(c.rootfs, 'x'));
      writeFileSync(join(c.rootfs, 'x', 'd'), 'a file where the archive has a directory');
      const tar = Buffer.concat([block({ name: '.', type: '5' }), block({ name: 'd', type: '5' }), fileEntry('d/f', 'ok'), END]);
      writeFileSync(join(c.context, 'a.tar'), tar);
      await add(c, { sources: ['a.tar'], dest: '/x' });
    },
    check: (t, c) => t.equal(read(join(c.rootfs, 'x/d/f')), 'ok'),
  },
  {
    // Stricter than Go's reader (which stops at the marker): tar-stream reads on, and a block after it must be a header.
    name: 'garbage after the end-of-archive marker is refused',
    run: async (c) => {
      writeFileSync(join(c.context, 'a.tar'), Buffer.concat([fileEntry('f', 'ok'), END, data('trailing garbage')]));
      await add(c, { sources: ['a.tar'], dest: '/x/' });
    },
    code: 'ERR_LAYER_INVALID',
  },
  {
    name: 'an archive into a dest that is a file',
    run: async (c) => {
      writeFileSync(join(c.rootfs, 'x'), 'a file');
      writeFileSync(join(c.context, 'a.tar'), Buffer.concat([fileEntry('f', 'ok'), END]));
      await add(c, { sources: ['a.tar'], dest: '/x' });
    },
    code: 'ERR_BUILD_DEST',
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const ctx = setup(t);
    const before = readTree(ctx.outside);
    if (c.code) await t.rejects(c.run(ctx), { code: c.code });
    else {
      await c.run(ctx);
      c.check?.(t, ctx);
    }
    t.same(diffSnapshots(before, readTree(ctx.outside)), [], 'nothing outside the rootfs changed');
  });
}

/** A loopback server: path -> handler. Counts requests. */
async function serve(
  t: Tap.Test,
  routes: Record<string, (res: import('node:http').ServerResponse, base: string) => void>,
): Promise<{ base: string; hits: () => number }> {
  let hits = 0;
  let base = '';
  const server: Server = createServer((req, res) => {
    hits++;
    const route = routes[req.url ?? ''];
    if (!route) {
      res.writeHead(404).end('no');
      return;
    }
    route(res, base);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { base, hits: () => hits };
}

t.test('ADD of URLs', async (t) => {
  const payload = Buffer.from('downloaded bytes\n');
  const digest = `sha256:${(await import('node:crypto')).createHash('sha256').update(payload).digest('hex')}`;
  const tgz = gzipSync(await sampleTar());
  const { base, hits } = await serve(t, {
    '/files/tool.sh': (res) => res.writeHead(200, { 'last-modified': 'Wed, 01 Jan 2020 00:00:00 GMT', 'content-length': payload.length }).end(payload),
    '/archive.tgz': (res) => res.writeHead(200).end(tgz),
    '/hop': (res, b) => res.writeHead(302, { location: `${b}/files/tool.sh` }).end(),
    '/loop': (res, b) => res.writeHead(302, { location: `${b}/loop` }).end(),
    '/huge-declared': (res) => res.writeHead(200, { 'content-length': 10_000_000 }).end(),
    '/huge-chunked': (res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024);
      let sent = 0;
      const pump = () => {
        while (sent < 8 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('error', () => undefined);
      pump();
    },
  });
  const limits = { maxBytes: 1024 * 1024 };

  t.test('fetched: name from the URL, mode 0600, mtime from Last-Modified, --checksum verified', async (t) => {
    const ctx = setup(t);
    await add(ctx, { sources: [`${base}/files/tool.sh`], dest: '/dl/', checksum: digest });
    const file = join(ctx.rootfs, 'dl/tool.sh');
    t.same(readFileSync(file), payload);
    t.equal(statSync(file).mode & 0o7777, 0o600);
    t.equal(statSync(file).mtime.toISOString(), '2020-01-01T00:00:00.000Z');
    t.same(readdirSync(join(ctx.rootfs, 'dl')), ['tool.sh'], 'no temporary file left');
  });
  t.test('a redirect is followed; the name stays the original URL’s; a file dest takes its own name', async (t) => {
    const ctx = setup(t);
    await add(ctx, { sources: [`${base}/hop`], dest: '/dl/' });
    t.same(readFileSync(join(ctx.rootfs, 'dl/hop')), payload);
    await add(ctx, { sources: [`${base}/files/tool.sh`], dest: '/usr/local/bin/tool' });
    t.same(readFileSync(join(ctx.rootfs, 'usr/local/bin/tool')), payload);
  });
  t.test('a fetched archive is not extracted', async (t) => {
    const ctx = setup(t);
    await add(ctx, { sources: [`${base}/archive.tgz`], dest: '/dl/' });
    t.same(readFileSync(join(ctx.rootfs, 'dl/archive.tgz')), tgz);
  });
  const failures: { name: string; url: string; code: string; checksum?: string }[] = [
    { name: 'a checksum mismatch', url: '/files/tool.sh', code: 'ERR_DIGEST_MISMATCH', checksum: `sha256:${'0'.repeat(64)}` },
    { name: 'a redirect loop', url: '/loop', code: 'ERR_BUILD_FETCH' },
    { name: 'a declared size over the cap', url: '/huge-declared', code: 'ERR_BUILD_FETCH' },
    { name: 'a streamed size over the cap', url: '/huge-chunked', code: 'ERR_BUILD_FETCH' },
    { name: 'a 404', url: '/missing', code: 'ERR_BUILD_FETCH' },
  ];
  for (const f of failures) {
    t.test(`hostile: ${f.name}`, async (t) => {
      const ctx = setup(t);
      const before = readTree(ctx.outside);
      await t.rejects(add(ctx, { sources: [`${base}${f.url}`], dest: '/dl/', limits, ...(f.checksum ? { checksum: f.checksum } : {}) }), { code: f.code });
      t.same(existsSync(join(ctx.rootfs, 'dl')) ? readdirSync(join(ctx.rootfs, 'dl')) : [], [], 'nothing left at the destination');
      t.same(diffSnapshots(before, readTree(ctx.outside)), [], 'nothing outside changed');
    });
  }
  t.test('sourcesDigest of a URL: by --checksum without fetching, else by its bytes', async (t) => {
    const ctx = setup(t);
    const options = (checksum?: string): CopyOptions => ({
      rootfs: '',
      dest: '/dl/',
      sources: [`${base}/files/tool.sh`],
      from: { root: ctx.context, trusted: false },
      add: true,
      ...(checksum ? { checksum } : {}),
    });
    const before = hits();
    const pinned = await sourcesDigest(options(digest));
    t.equal(hits(), before, 'no request with --checksum');
    const fetched = await sourcesDigest(options());
    t.ok(hits() > before, 'fetched without');
    t.equal(fetched, pinned, 'the bytes match the checksum: the same key either way');
    t.not(await sourcesDigest({ ...options(), sources: [`${base}/archive.tgz`] }), fetched, 'other bytes, another digest');
  });
});
