/**
 * copyInto / sourcesDigest / resolveOwner: Docker's COPY rules, table-driven,
 * into a rootfs that holds hostile image symlinks, from a context that holds
 * hostile symlinks of its own. Every case checks the result in the rootfs
 * and that a sentinel tree outside both (on the host) is untouched.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { diffSnapshots, readTree } from '../../layer-unpack/test/helpers/tree.js';
import { type CopyOptions, copyInto, resolveOwner, sourcesDigest } from '../dist/copy/index.js';

interface Ctx {
  dir: string;
  context: string;
  rootfs: string;
  outside: string;
}

const MTIME = new Date('2020-02-02T02:02:02Z');
/** A v2 file capability (cap_net_bind_service+ep). */
const CAPABILITY = Buffer.from('0100000200040000000000000000000000000000', 'hex');

/** One xattr of `path` in getfattr's hex form, or undefined. */
function xattr(path: string, name: string): string | undefined {
  const out = execFileSync('getfattr', ['--absolute-names', '-h', '-d', '-m', '-', '-e', 'hex', path], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.startsWith(`${name}=`));
  return line?.slice(name.length + 1);
}

function setup(t: Tap.Test): Ctx {
  const dir = t.testdir({});
  const ctx: Ctx = { dir, context: join(dir, 'context'), rootfs: join(dir, 'rootfs'), outside: join(dir, 'outside') };
  mkdirSync(join(ctx.outside, 'etc'), { recursive: true });
  writeFileSync(join(ctx.outside, 'sentinel'), 'precious\n');
  writeFileSync(join(ctx.outside, 'etc', 'passwd'), 'hostonly:x:4242:4242::/:/bin/sh\n');
  // The context: files owned by someone else, a tree, hostile symlinks.
  mkdirSync(join(ctx.context, 'dir', 'sub'), { recursive: true });
  writeFileSync(join(ctx.context, 'a.txt'), 'a\n');
  writeFileSync(join(ctx.context, 'b.txt'), 'b\n');
  writeFileSync(join(ctx.context, 'run.sh'), '#!/bin/sh\n', { mode: 0o755 });
  writeFileSync(join(ctx.context, 'dir', 'one'), '1\n');
  writeFileSync(join(ctx.context, 'dir', 'sub', 'two'), '2\n');
  writeFileSync(join(ctx.context, 'dir', 'debug.log'), 'noise\n');
  symlinkSync('one', join(ctx.context, 'dir', 'rel-link'));
  symlinkSync(join(ctx.outside, 'sentinel'), join(ctx.context, 'dir', 'out-link'));
  symlinkSync('../outside/sentinel', join(ctx.context, 'escape'));
  symlinkSync(join(ctx.outside, 'sentinel'), join(ctx.context, 'escape-abs'));
  symlinkSync('dir/one', join(ctx.context, 'inside-link'));
  chownSync(join(ctx.context, 'a.txt'), 1234, 5678);
  chownSync(join(ctx.context, 'dir', 'one'), 1234, 5678);
  execFileSync('find', [ctx.context, '-exec', 'touch', '-h', '-d', MTIME.toISOString(), '{}', '+']);
  // The rootfs: an image with its own users and hostile links.
  mkdirSync(join(ctx.rootfs, 'etc'), { recursive: true });
  mkdirSync(join(ctx.rootfs, 'srv'), { mode: 0o700 });
  chmodSync(join(ctx.rootfs, 'srv'), 0o700);
  chownSync(join(ctx.rootfs, 'srv'), 5, 5);
  writeFileSync(join(ctx.rootfs, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n');
  writeFileSync(join(ctx.rootfs, 'etc', 'group'), 'root:x:0:\nstaff:x:50:\n');
  writeFileSync(join(ctx.rootfs, 'file'), 'a plain file\n');
  symlinkSync('/', join(ctx.rootfs, 'to-root'));
  symlinkSync('../../../../../../..', join(ctx.rootfs, 'up'));
  symlinkSync('/etc', join(ctx.rootfs, 'app'));
  symlinkSync(ctx.outside, join(ctx.rootfs, 'host-outside'));
  return ctx;
}

function options(ctx: Ctx, extra: Partial<CopyOptions> & Pick<CopyOptions, 'sources' | 'dest'>): CopyOptions {
  return { rootfs: ctx.rootfs, from: { root: ctx.context, trusted: false }, ...extra };
}

const read = (path: string) => readFileSync(path, 'utf8');
const owner = (path: string) => {
  const st = lstatSync(path);
  return `${st.uid}:${st.gid}`;
};
const mode = (path: string) => (lstatSync(path).mode & 0o7777).toString(8);

interface Case {
  name: string;
  run: (ctx: Ctx) => Promise<void>;
  /** Expected error code, else the checks run. */
  code?: string;
  check?: (t: Tap.Test, ctx: Ctx) => void;
}

const cases: Case[] = [
  {
    name: 'a file to a file path: parents made 0755 root:root, owner 0:0, mode and mtime kept',
    run: (c) => copyInto(options(c, { sources: ['run.sh'], dest: '/opt/tools/run' })),
    check: (t, c) => {
      t.equal(read(join(c.rootfs, 'opt/tools/run')), '#!/bin/sh\n');
      t.equal(mode(join(c.rootfs, 'opt/tools/run')), '755');
      t.equal(owner(join(c.rootfs, 'opt/tools/run')), '0:0');
      t.equal(statSync(join(c.rootfs, 'opt/tools/run')).mtime.getTime(), MTIME.getTime(), 'mtime kept');
      t.equal(mode(join(c.rootfs, 'opt')), '755');
      t.equal(owner(join(c.rootfs, 'opt/tools')), '0:0');
    },
  },
  {
    name: 'a file into a dest ending in /',
    run: (c) => copyInto(options(c, { sources: ['a.txt'], dest: '/new/' })),
    check: (t, c) => t.equal(read(join(c.rootfs, 'new/a.txt')), 'a\n'),
  },
  {
    name: 'a file into an existing directory without /: dest/name; the directory keeps owner and mode',
    run: (c) => copyInto(options(c, { sources: ['a.txt'], dest: '/srv' })),
    check: (t, c) => {
      t.equal(read(join(c.rootfs, 'srv/a.txt')), 'a\n');
      t.equal(mode(join(c.rootfs, 'srv')), '700');
      t.equal(owner(join(c.rootfs, 'srv')), '5:5');
    },
  },
  {
    name: 'a directory copies its contents; symlinks below it stay symlinks, verbatim',
    run: (c) => copyInto(options(c, { sources: ['dir'], dest: '/data' })),
    check: (t, c) => {
      t.notOk(existsSync(join(c.rootfs, 'data/dir')), 'not the directory itself');
      t.equal(read(join(c.rootfs, 'data/one')), '1\n');
      t.equal(read(join(c.rootfs, 'data/sub/two')), '2\n');
      t.equal(readlinkSync(join(c.rootfs, 'data/rel-link')), 'one');
      t.equal(readlinkSync(join(c.rootfs, 'data/out-link')), join(c.outside, 'sentinel'), 'a link out of the context is data, not followed');
      t.equal(statSync(join(c.rootfs, 'data/sub')).mtime.getTime(), MTIME.getTime(), 'directory mtime kept');
    },
  },
  {
    name: 'hardlinks within a copied directory stay hardlinks (as Docker and buildah)',
    run: (c) => {
      execFileSync('ln', [join(c.context, 'dir', 'one'), join(c.context, 'dir', 'sub', 'one-again')]);
      return copyInto(options(c, { sources: ['dir'], dest: '/linked/' }));
    },
    check: (t, c) => {
      t.equal(statSync(join(c.rootfs, 'linked/sub/one-again')).ino, statSync(join(c.rootfs, 'linked/one')).ino);
      t.equal(read(join(c.rootfs, 'linked/sub/one-again')), '1\n');
      t.not(statSync(join(c.rootfs, 'linked/one')).ino, statSync(join(c.context, 'dir/one')).ino, 'a copy, not a link to the context');
    },
  },
  {
    name: 'file capabilities and user.* xattrs are copied, after --chown (which would drop a capability)',
    run: (c) => {
      execFileSync('setfattr', ['-n', 'security.capability', '-v', `0x${CAPABILITY.toString('hex')}`, join(c.context, 'run.sh')]);
      execFileSync('setfattr', ['-n', 'user.note', '-v', 'kept', join(c.context, 'dir', 'sub')]);
      execFileSync('setfattr', ['-n', 'trusted.host', '-v', 'dropped', join(c.context, 'dir', 'one')]);
      return copyInto(options(c, { sources: ['run.sh'], dest: '/caps/run.sh', chown: { uid: 1000, gid: 1000 } })).then(() =>
        copyInto(options(c, { sources: ['dir'], dest: '/caps/dir/' })),
      );
    },
    check: (t, c) => {
      t.equal(xattr(join(c.rootfs, 'caps/run.sh'), 'security.capability'), `0x${CAPABILITY.toString('hex')}`);
      t.equal(owner(join(c.rootfs, 'caps/run.sh')), '1000:1000');
      t.equal(xattr(join(c.rootfs, 'caps/dir/sub'), 'user.note'), '0x6b657074');
      t.equal(xattr(join(c.rootfs, 'caps/dir/one'), 'trusted.host'), undefined, 'trusted.* stays on the host');
    },
  },
  {
    name: 'a wildcard: the files it matches, into a directory',
    run: (c) => copyInto(options(c, { sources: ['*.txt', 'dir/*/two'], dest: '/w/' })),
    check: (t, c) => {
      t.equal(read(join(c.rootfs, 'w/a.txt')), 'a\n');
      t.equal(read(join(c.rootfs, 'w/b.txt')), 'b\n');
      t.equal(read(join(c.rootfs, 'w/two')), '2\n');
      t.notOk(existsSync(join(c.rootfs, 'w/run.sh')));
    },
  },
  {
    name: 'a wildcard matching one file may go to a file path',
    run: (c) => copyInto(options(c, { sources: ['a.t?t'], dest: '/single' })),
    check: (t, c) => t.equal(read(join(c.rootfs, 'single')), 'a\n'),
  },
  {
    name: 'several sources into a path that is not a directory',
    run: (c) => copyInto(options(c, { sources: ['a.txt', 'b.txt'], dest: '/nodir' })),
    code: 'ERR_BUILD_DEST',
  },
  {
    name: 'a wildcard matching several files into a path that is not a directory',
    run: (c) => copyInto(options(c, { sources: ['*.txt'], dest: '/nodir' })),
    code: 'ERR_BUILD_DEST',
  },
  {
    name: '--chown and --chmod apply to every file and directory copied; --chown to the directories made (as buildah)',
    run: async (c) => {
      await copyInto(options(c, { sources: ['dir'], dest: '/owned/x/', chown: { uid: 1000, gid: 1001 }, chmod: 0o640 }));
      await copyInto(options(c, { sources: ['a.txt'], dest: '/etc/', chown: { uid: 1000, gid: 1001 } }));
    },
    check: (t, c) => {
      t.equal(owner(join(c.rootfs, 'owned/x/one')), '1000:1001');
      t.equal(owner(join(c.rootfs, 'owned/x/sub')), '1000:1001');
      t.equal(owner(join(c.rootfs, 'owned/x/rel-link')), '1000:1001', 'links too (lchown)');
      t.equal(mode(join(c.rootfs, 'owned/x/sub/two')), '640');
      t.equal(mode(join(c.rootfs, 'owned/x/sub')), '640');
      t.equal(owner(join(c.rootfs, 'owned')), '1000:1001', 'a directory the copy made');
      t.equal(mode(join(c.rootfs, 'owned')), '755', '--chmod is for what is copied');
      t.equal(owner(join(c.rootfs, 'etc')), '0:0', 'an existing one keeps its owner');
    },
  },
  {
    name: 'keepOwners (COPY --from): the sources keep their owners',
    run: (c) => copyInto({ ...options(c, { sources: ['a.txt', 'dir'], dest: '/kept/' }), from: { root: c.context, trusted: true, keepOwners: true } }),
    check: (t, c) => {
      t.equal(owner(join(c.rootfs, 'kept/a.txt')), '1234:5678');
      t.equal(owner(join(c.rootfs, 'kept/one')), '1234:5678');
    },
  },
  {
    name: 'the context: files become 0:0 whatever their owner',
    run: (c) => copyInto(options(c, { sources: ['a.txt'], dest: '/ctx-owned' })),
    check: (t, c) => t.equal(owner(join(c.rootfs, 'ctx-owned')), '0:0'),
  },
  {
    name: '.dockerignore: ignored files are not there, a ! exception below an ignored directory is',
    run: (c) => {
      mkdirSync(join(c.context, 'secret'));
      writeFileSync(join(c.context, 'secret', 'key'), 'k');
      writeFileSync(join(c.context, 'secret', 'keep'), 'kept');
      const ignore = (p: string) => p.endsWith('.log') || (p.startsWith('secret') && p !== 'secret/keep');
      return copyInto({ ...options(c, { sources: ['.'], dest: '/all/' }), from: { root: c.context, trusted: false, ignore } });
    },
    check: (t, c) => {
      t.notOk(existsSync(join(c.rootfs, 'all/dir/debug.log')));
      t.ok(existsSync(join(c.rootfs, 'all/dir/one')));
      t.notOk(existsSync(join(c.rootfs, 'all/secret/key')));
      t.equal(read(join(c.rootfs, 'all/secret/keep')), 'kept');
    },
  },
  {
    name: 'an ignored source matches nothing',
    run: (c) =>
      copyInto({ ...options(c, { sources: ['dir/debug.log'], dest: '/x' }), from: { root: c.context, trusted: false, ignore: (p) => p.endsWith('.log') } }),
    code: 'ERR_BUILD_SOURCE',
  },
  {
    name: 'a heredoc becomes a 0644 file',
    run: (c) => copyInto(options(c, { sources: [], heredocs: [{ name: 'conf', content: 'x=1\n', expand: true }], dest: '/etc/app.conf' })),
    check: (t, c) => {
      t.equal(read(join(c.rootfs, 'etc/app.conf')), 'x=1\n');
      t.equal(mode(join(c.rootfs, 'etc/app.conf')), '644');
    },
  },
  {
    name: 'a missing source names its pattern',
    run: (c) => copyInto(options(c, { sources: ['nope.txt'], dest: '/x' })),
    code: 'ERR_BUILD_SOURCE',
  },
  {
    name: 'the top-level source symlink is followed inside the context',
    run: (c) => copyInto(options(c, { sources: ['inside-link'], dest: '/followed' })),
    check: (t, c) => {
      t.ok(lstatSync(join(c.rootfs, 'followed')).isFile());
      t.equal(read(join(c.rootfs, 'followed')), '1\n');
    },
  },
  // Hostile input.
  { name: 'hostile: ../ out of the context', run: (c) => copyInto(options(c, { sources: ['../outside/sentinel'], dest: '/x' })), code: 'ERR_BUILD_SOURCE' },
  {
    name: 'hostile: dir/../../ out of the context',
    run: (c) => copyInto(options(c, { sources: ['dir/../../outside'], dest: '/x/' })),
    code: 'ERR_BUILD_SOURCE',
  },
  {
    name: 'hostile: a context symlink climbing out (relative)',
    run: (c) => copyInto(options(c, { sources: ['escape'], dest: '/x' })),
    code: 'ERR_BUILD_SOURCE',
  },
  {
    name: 'hostile: a context symlink to a host path (absolute)',
    run: (c) => copyInto(options(c, { sources: ['escape-abs'], dest: '/x' })),
    code: 'ERR_BUILD_SOURCE',
  },
  {
    name: 'hostile: image symlink /app -> /etc lands in rootfs/etc',
    run: (c) => copyInto(options(c, { sources: ['a.txt'], dest: '/app/' })),
    check: (t, c) => t.equal(read(join(c.rootfs, 'etc/a.txt')), 'a\n'),
  },
  {
    name: 'hostile: image symlink to / and to ../../.. stay in the rootfs',
    run: async (c) => {
      await copyInto(options(c, { sources: ['a.txt'], dest: '/to-root/' }));
      await copyInto(options(c, { sources: ['b.txt'], dest: '/up/' }));
      await copyInto(options(c, { sources: ['dir'], dest: '/up/deeper/' }));
    },
    check: (t, c) => {
      t.equal(read(join(c.rootfs, 'a.txt')), 'a\n');
      t.equal(read(join(c.rootfs, 'b.txt')), 'b\n');
      t.equal(read(join(c.rootfs, 'deeper/one')), '1\n');
    },
  },
  {
    name: 'hostile: image symlink to a host path is a path in the rootfs',
    run: (c) => copyInto(options(c, { sources: ['a.txt'], dest: join(c.outside, 'sentinel') })),
    check: (t, c) => t.equal(read(join(c.rootfs, c.outside, 'sentinel')), 'a\n'),
  },
  {
    name: 'hostile: an image symlink at the file name is replaced, not written through',
    run: async (c) => {
      mkdirSync(join(c.rootfs, 'opt'));
      symlinkSync(join(c.outside, 'sentinel'), join(c.rootfs, 'opt', 'a.txt'));
      symlinkSync('/file', join(c.rootfs, 'opt', 'b.txt'));
      await copyInto(options(c, { sources: ['a.txt', 'b.txt'], dest: '/opt/' }));
    },
    check: (t, c) => {
      t.ok(lstatSync(join(c.rootfs, 'opt/a.txt')).isFile());
      t.equal(read(join(c.rootfs, 'file')), 'a plain file\n', "the link's target in the image is untouched too");
    },
  },
  {
    name: 'hostile: an image symlink where the copied tree has a directory is replaced by a directory',
    run: async (c) => {
      mkdirSync(join(c.rootfs, 'tree'));
      symlinkSync(c.outside, join(c.rootfs, 'tree', 'sub'));
      await copyInto(options(c, { sources: ['dir'], dest: '/tree/' }));
    },
    check: (t, c) => {
      t.ok(lstatSync(join(c.rootfs, 'tree/sub')).isDirectory());
      t.equal(read(join(c.rootfs, 'tree/sub/two')), '2\n');
    },
  },
  {
    name: 'hostile: --from rootfs with a symlink loop as the source',
    run: async (c) => {
      const stage = join(c.dir, 'stage');
      mkdirSync(stage);
      symlinkSync('b', join(stage, 'a'));
      symlinkSync('a', join(stage, 'b'));
      await copyInto({ ...options(c, { sources: ['a'], dest: '/x' }), from: { root: stage, trusted: true, keepOwners: true } });
    },
    code: 'ERR_BUILD_SOURCE',
  },
  {
    name: 'hostile: loops below a copied directory are copied as links',
    run: async (c) => {
      const stage = join(c.dir, 'stage');
      mkdirSync(join(stage, 'loops'), { recursive: true });
      symlinkSync('b', join(stage, 'loops', 'a'));
      symlinkSync('a', join(stage, 'loops', 'b'));
      symlinkSync('.', join(stage, 'loops', 'self'));
      await copyInto({ ...options(c, { sources: ['loops'], dest: '/loops' }), from: { root: stage, trusted: true, keepOwners: true } });
    },
    check: (t, c) => {
      t.equal(readlinkSync(join(c.rootfs, 'loops/a')), 'b');
      t.equal(readlinkSync(join(c.rootfs, 'loops/self')), '.');
    },
  },
  {
    name: 'hostile: a dest symlink loop in the image',
    run: async (c) => {
      symlinkSync('loop2', join(c.rootfs, 'loop1'));
      symlinkSync('loop1', join(c.rootfs, 'loop2'));
      await copyInto(options(c, { sources: ['a.txt'], dest: '/loop1/x' }));
    },
    code: 'ERR_BUILD_DEST',
  },
  {
    name: 'hostile: a dest with .. stays in the rootfs',
    run: (c) => copyInto(options(c, { sources: ['a.txt'], dest: '/../../../../landed' })),
    check: (t, c) => t.equal(read(join(c.rootfs, 'landed')), 'a\n'),
  },
  {
    name: 'mayIncludeUnder: an excluded directory with nothing to re-include is not walked',
    run: (c) => {
      const walked: string[] = [];
      const ignore = (p: string) => {
        walked.push(p);
        return p === 'dir' || p.startsWith('dir/');
      };
      return copyInto({
        ...options(c, { sources: ['.'], dest: '/all/' }),
        from: { root: c.context, trusted: false, ignore, mayIncludeUnder: () => false },
      }).then(() => {
        if (walked.some((p) => p.startsWith('dir/'))) throw new Error(`walked below dir: ${walked.join(' ')}`);
      });
    },
    check: (t, c) => {
      t.notOk(existsSync(join(c.rootfs, 'all/dir')));
      t.ok(existsSync(join(c.rootfs, 'all/a.txt')));
    },
  },
  {
    name: 'a context file name that is not UTF-8 is reported, not dropped',
    run: (c) => {
      writeFileSync(Buffer.concat([Buffer.from(`${c.context}/dir/bad-`), Buffer.from([0xff])]), 'x');
      return copyInto(options(c, { sources: ['dir'], dest: '/d/' }));
    },
    code: 'ERR_BUILD_SOURCE',
  },
  { name: 'a dest through a file', run: (c) => copyInto(options(c, { sources: ['a.txt'], dest: '/file/x' })), code: 'ERR_BUILD_DEST' },
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

t.test('resolveOwner: names from the image, numbers as they are', async (t) => {
  const ctx = setup(t);
  t.same(await resolveOwner(ctx.rootfs, 'app'), { uid: 1000, gid: 1000 }, 'a user alone: its uid as the gid too (Docker)');
  t.same(await resolveOwner(ctx.rootfs, 'app:staff'), { uid: 1000, gid: 50 });
  t.same(await resolveOwner(ctx.rootfs, '10:20'), { uid: 10, gid: 20 });
  t.same(await resolveOwner(ctx.rootfs, '4242'), { uid: 4242, gid: 4242 }, 'numbers need no entry');
  await t.rejects(resolveOwner(ctx.rootfs, 'ghost'), { code: 'ERR_BUILD_OWNER' });
  await t.rejects(resolveOwner(ctx.rootfs, 'app:ghosts'), { code: 'ERR_BUILD_OWNER' });
  await t.rejects(resolveOwner(ctx.rootfs, 'a:b:c'), { code: 'ERR_BUILD_OWNER' });
  await t.rejects(resolveOwner(ctx.rootfs, ':staff'), { code: 'ERR_BUILD_OWNER' });
  // /etc/passwd a symlink to the host's (outside) file: resolved inside the rootfs, where it does not exist.
  writeFileSync(join(ctx.rootfs, 'etc', 'passwd'), '');
  execFileSync('ln', ['-sf', `../../../../../../../../..${ctx.outside}/etc/passwd`, join(ctx.rootfs, 'etc', 'passwd')]);
  await t.rejects(resolveOwner(ctx.rootfs, 'hostonly'), { code: 'ERR_BUILD_OWNER' }, "the host's passwd is never read");
  mkdirSync(join(ctx.rootfs, 'real'));
  writeFileSync(join(ctx.rootfs, 'real', 'passwd'), 'linked:x:77:77::/:/bin/sh\n');
  execFileSync('ln', ['-sf', '/real/passwd', join(ctx.rootfs, 'etc', 'passwd')]);
  t.same(await resolveOwner(ctx.rootfs, 'linked'), { uid: 77, gid: 77 }, 'a symlinked /etc/passwd is followed inside the rootfs');
});

t.test('sourcesDigest: content, names, modes and owners count; mtimes and inodes do not', async (t) => {
  const ctx = setup(t);
  const base = (root: string, extra: Partial<CopyOptions> = {}): CopyOptions => ({
    rootfs: '',
    dest: '/app/',
    sources: ['dir', 'a.txt'],
    from: { root, trusted: false, ignore: (p) => p.endsWith('.ignored') },
    ...extra,
  });
  const reference = await sourcesDigest(base(ctx.context));
  t.match(reference, /^sha256:[a-f0-9]{64}$/);
  t.equal(await sourcesDigest(base(ctx.context)), reference, 'stable');

  const variants: { name: string; change: (root: string) => void; extra?: Partial<CopyOptions>; same: boolean }[] = [
    { name: 'mtimes touched', change: (r) => utimesSync(join(r, 'dir', 'one'), new Date(), new Date()), same: true },
    { name: 'an ignored file added', change: (r) => writeFileSync(join(r, 'dir', 'x.ignored'), 'x'), same: true },
    { name: 'a file outside the sources added', change: (r) => writeFileSync(join(r, 'unrelated'), 'x'), same: true },
    { name: 'one byte changed', change: (r) => writeFileSync(join(r, 'dir', 'sub', 'two'), '3\n'), same: false },
    { name: 'a mode changed', change: (r) => chmodSync(join(r, 'dir', 'one'), 0o600), same: false },
    { name: 'a file renamed', change: (r) => execFileSync('mv', [join(r, 'dir', 'one'), join(r, 'dir', 'uno')]), same: false },
    { name: 'a file added', change: (r) => writeFileSync(join(r, 'dir', 'new'), ''), same: false },
    { name: 'a symlink target changed', change: (r) => execFileSync('ln', ['-sfn', 'sub', join(r, 'dir', 'rel-link')]), same: false },
    { name: 'a user.* xattr set', change: (r) => execFileSync('setfattr', ['-n', 'user.x', '-v', '1', join(r, 'dir', 'one')]), same: false },
    { name: 'a trusted.* xattr set (not copied)', change: (r) => execFileSync('setfattr', ['-n', 'trusted.x', '-v', '1', join(r, 'dir', 'one')]), same: true },
    { name: '--chmod given', change: () => undefined, extra: { chmod: 0o644 }, same: false },
    { name: '--chown given', change: () => undefined, extra: { chown: { uid: 1, gid: 1 } }, same: false },
    { name: 'another destination', change: () => undefined, extra: { dest: '/other/' }, same: false },
    { name: 'owner changed in the context (becomes 0:0 anyway)', change: (r) => chownSync(join(r, 'dir', 'one'), 9, 9), same: true },
    {
      name: 'owner changed with keepOwners',
      change: (r) => chownSync(join(r, 'dir', 'one'), 9, 9),
      extra: { from: { root: '', trusted: true, keepOwners: true } },
      same: false,
    },
  ];
  for (const [i, v] of variants.entries()) {
    // A copy: other inodes, other ctimes; the same contents, modes and owners (cp -a).
    const copy = join(ctx.dir, `copy${i}`);
    cpSync(ctx.context, copy, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
    execFileSync('chown', ['-h', '1234:5678', join(copy, 'a.txt'), join(copy, 'dir', 'one')]);
    const referenceHere = v.extra?.from ? await sourcesDigest({ ...base(copy), from: { ...v.extra.from, root: copy } }) : reference;
    v.change(copy);
    const options = { ...base(copy), ...v.extra };
    if (v.extra?.from) options.from = { ...v.extra.from, root: copy };
    const digest = await sourcesDigest(options);
    if (v.same) t.equal(digest, referenceHere, `${v.name}: same digest`);
    else t.not(digest, referenceHere, `${v.name}: another digest`);
  }
  // The same bytes as a second file or as a hardlink give different layers, so different keys.
  const copied = join(ctx.dir, 'twin-copy');
  const linked = join(ctx.dir, 'twin-link');
  for (const root of [copied, linked]) cpSync(ctx.context, root, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
  execFileSync('cp', ['-p', join(copied, 'dir', 'one'), join(copied, 'dir', 'twin')]);
  execFileSync('ln', [join(linked, 'dir', 'one'), join(linked, 'dir', 'twin')]);
  t.not(await sourcesDigest(base(linked)), await sourcesDigest(base(copied)), 'a hardlink is not a copy');
});
