import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { removeDetached, startDetached, waitForState } from '../../../test/helpers/containers.js';
import { hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const root = tempStore('conveyor-export-rootfs-');
const work = join(root, '..', 'work');
mkdirSync(work);
t.teardown(() => removeStore(root));

/** Files, dirs and symlinks with type, owner, mode and size, then every regular file's sha256: what a rootfs comparison looks at. */
const listing = (dir: string) =>
  execFileSync(
    'sh',
    [
      '-c',
      `cd '${dir}' && find . \\( -type f -o -type d -o -type l \\) -printf '%p %y %U:%G %m %s %l\\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum`,
    ],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 28,
    },
  );
const untar = (tarFile: string, dir: string) => {
  mkdirSync(dir);
  execFileSync('tar', ['-xpf', tarFile, '-C', dir, '--numeric-owner']);
};

t.test(
  'an image: its unpacked layers mounted, whiteouts applied, the same tree as umoci raw unpack',
  { skip: !hasSharedImages && 'no shared images' },
  async (t) => {
    importToStore(`${join(SHARED_IMAGES, 'multi')}:latest`, root, 'docker.io/library/multi:latest');
    const out = join(work, 'multi.tar');
    const early = await runTool('img-export', ['--root', root, '--rootfs', 'multi', '-o', out]);
    t.equal(early.code, 1, 'layers not unpacked yet');
    t.match(early.stderr, /layer-unpack first/);
    t.notOk(existsSync(out) || existsSync(`${out}.tmp`), 'nothing written');
    const listed = await runTool('img-ls', ['--root', root, '--json', 'multi']);
    const unpacked = await runTool('layer-unpack', ['--root', root], { input: listed.stdout });
    t.equal(unpacked.code, 0, unpacked.stderr);
    const res = await runTool('img-export', ['--root', root, '--rootfs', 'multi', '-o', out]);
    t.equal(res.code, 0, res.stderr);
    t.same(readdirSync(join(root, 'containers')), [], 'the overlay is unmounted and its dir removed');
    untar(out, join(work, 'exported'));
    execFileSync('umoci', ['raw', 'unpack', '--image', `${join(SHARED_IMAGES, 'multi')}:latest`, join(work, 'umoci')], { stdio: 'pipe' });
    t.equal(listing(join(work, 'exported')), listing(join(work, 'umoci')));
  },
);

t.test('a running container: its merged view, with what it wrote', async (t) => {
  const rootfs = busyboxRootfs(root);
  const container = await startDetached(root, rootfs, [], ['sh', '-c', 'echo made > /made.txt && rm /bin/cat && sleep 60']);
  t.teardown(() => removeDetached(root, container.id));
  await waitForState(root, container.id, () => existsSync(join(root, 'containers', container.id, 'upper', 'made.txt')));
  const out = join(work, 'ctr.tar');
  const res = await runTool('img-export', ['--root', root, '--rootfs', container.id.slice(0, 12), '-o', out]);
  t.equal(res.code, 0, res.stderr);
  const names = execFileSync('tar', ['tf', out], { encoding: 'utf8' }).split('\n');
  t.ok(names.includes('made.txt'), 'a file the container wrote');
  t.ok(names.includes('bin/busybox'), 'a file of the image');
  t.notOk(names.includes('bin/cat'), 'a file the container deleted (a whiteout) is not there');
  t.equal(execFileSync('tar', ['xOf', out, 'made.txt'], { encoding: 'utf8' }), 'made\n');
});

t.test('bad input: no such image or container, two names', async (t) => {
  const missing = await runTool('img-export', ['--root', root, '--rootfs', 'nosuch', '-o', join(work, 'x.tar')]);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /no such container: nosuch/);
  t.notOk(existsSync(join(work, 'x.tar')) || existsSync(join(work, 'x.tar.tmp')));
  t.equal((await runTool('img-export', ['--root', root, '--rootfs', 'a', 'b', '-o', join(work, 'y.tar')])).code, 2);
});
