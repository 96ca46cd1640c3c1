/**
 * The whole pull-free pipeline on the shared real images (skipped where
 * ../shared/images is absent): img-ls | layer-unpack | ctr-spawn, and the same
 * through overlay-mount.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { hasSharedImages, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runToolSync, toolPath } from '../../../test/helpers/tools.js';
import { containerDirs, mountsUnder } from './helpers.js';

const bin = toolPath;

t.test('img-ls | layer-unpack | [overlay-mount |] ctr-spawn on debian and multi', { skip: hasSharedImages ? false : 'no ../shared/images here' }, async (t) => {
  const root = tempStore('conveyor-pipe-');
  t.teardown(() => removeStore(root));
  execFileSync('skopeo', ['copy', '-q', `oci:${join(SHARED_IMAGES, 'debian')}:bookworm-slim`, `oci:${root}:docker.io/library/debian:bookworm-slim`]);
  execFileSync('skopeo', ['copy', '-q', `oci:${join(SHARED_IMAGES, 'multi')}:latest`, `oci:${root}:localhost/multi:latest`]);
  const pipeline = (ref: string, middle: string, command: string) =>
    execFileSync(
      'bash',
      [
        '-o',
        'pipefail',
        '-c',
        `node ${bin('img-ls')} --root ${root} --json ${ref} | node ${bin('layer-unpack')} --root ${root} -q | ${middle} node ${bin('ctr-spawn')} -q -- sh -c '${command}'`,
      ],
      { encoding: 'utf8' },
    );
  t.equal(pipeline('debian', '', 'cat /etc/debian_version | cut -d. -f1; id -un; echo $$'), '12\nroot\n1\n', 'debian runs');
  t.equal(
    pipeline('localhost/multi', `node ${bin('overlay-mount')} -q --root ${root} |`, 'test -d /etc && echo multi ok'),
    'multi ok\n',
    '5 layers through overlay-mount',
  );
  // overlay-mount's mount stays (ctr-spawn does not own it); tear it down and check nothing else is left.
  for (const id of containerDirs(root)) {
    const down = runToolSync('overlay-mount', ['-q', '--root', root, '--unmount', id]);
    if (down.code !== 0) throw new Error(`overlay-mount --unmount ${id}: ${down.stderr}`);
  }
  t.strictSame(mountsUnder(root), []);
  t.strictSame(containerDirs(root), []);
});
