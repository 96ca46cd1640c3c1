/**
 * Test images built by an independent tool (umoci, from Debian's
 * busybox-static), so a bug in our own writer cannot hide on both sides.
 * Built once per checkout into test/.fixtures under a lock; test files that
 * run in parallel share the result read-only.
 *
 * Layout test/.fixtures/busybox (OCI image layout) has the tags:
 *   latest  one layer: static busybox, applet links, /etc/passwd and /etc/group
 *           (root, app uid 1000, nobody), Cmd ["sh"]
 *   v2      latest + a second layer with /hello.txt ("hello from v2")
 *   cfg     v2 with User app, WorkingDir /home/app, Env FOO=bar, Entrypoint
 *           ["/bin/sh", "-c"], Cmd ["id -u; pwd; echo $FOO"], Hostname unset
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync, rmSync, symlinkSync, copyFileSync, chmodSync, renameSync, openSync, closeSync, unlinkSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES_DIR = join(REPO_ROOT, 'test', '.fixtures');
/** ../shared/images beside the checkout, when this machine has it. */
export const SHARED_IMAGES = join(REPO_ROOT, '..', 'shared', 'images');
export const hasSharedImages = existsSync(join(SHARED_IMAGES, 'busybox', 'index.json'));

const APPLETS = [
  'sh',
  'ash',
  'echo',
  'cat',
  'ls',
  'id',
  'env',
  'pwd',
  'hostname',
  'sleep',
  'true',
  'false',
  'ps',
  'mount',
  'touch',
  'rm',
  'mkdir',
  'kill',
  'head',
  'dd',
  'wc',
  'grep',
  'stat',
  'readlink',
  'test',
  'whoami',
  'yes',
  'seq',
  'printf',
  'trap',
  'uname',
];
const FIXTURE_VERSION = '1';

function run(cmd: string, args: string[], cwd?: string): void {
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], cwd });
}

function lock(path: string): () => void {
  mkdirSync(dirname(path), { recursive: true });
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      closeSync(openSync(path, 'wx'));
      return () => unlinkSync(path);
    } catch {
      if (Date.now() > deadline) throw new Error(`fixture lock ${path} held too long`);
      execFileSync('sleep', ['0.2']);
    }
  }
}

/** Path of the busybox OCI layout; builds it on first use. */
export function busyboxLayout(): string {
  const layout = join(FIXTURES_DIR, 'busybox');
  const stamp = join(layout, `.built-${FIXTURE_VERSION}`);
  if (existsSync(stamp)) return layout;
  const release = lock(join(FIXTURES_DIR, 'busybox.lock'));
  try {
    if (existsSync(stamp)) return layout;
    const work = join(FIXTURES_DIR, `busybox-build-${process.pid}`);
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work, { recursive: true });
    const tmpLayout = join(work, 'layout');
    const bundle = join(work, 'bundle');
    run('umoci', ['init', '--layout', tmpLayout]);
    run('umoci', ['new', '--image', `${tmpLayout}:latest`]);
    run('umoci', ['unpack', '--image', `${tmpLayout}:latest`, bundle]);
    const rootfs = join(bundle, 'rootfs');
    for (const dir of ['bin', 'etc', 'tmp', 'home/app', 'root', 'proc', 'sys', 'dev']) mkdirSync(join(rootfs, dir), { recursive: true });
    chmodSync(join(rootfs, 'tmp'), 0o1777);
    copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
    chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
    for (const applet of APPLETS) symlinkSync('busybox', join(rootfs, 'bin', applet));
    writeFileSync(
      join(rootfs, 'etc', 'passwd'),
      'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    );
    writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n');
    execFileSync('chown', ['1000:1000', join(rootfs, 'home', 'app')]);
    run('umoci', ['repack', '--image', `${tmpLayout}:latest`, bundle]);
    run('umoci', [
      'config',
      '--image',
      `${tmpLayout}:latest`,
      '--config.cmd',
      'sh',
      '--config.env',
      'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    ]);
    // v2: one more layer on top of latest.
    rmSync(bundle, { recursive: true, force: true });
    run('umoci', ['unpack', '--image', `${tmpLayout}:latest`, bundle]);
    writeFileSync(join(rootfs, 'hello.txt'), 'hello from v2\n');
    run('umoci', ['repack', '--image', `${tmpLayout}:v2`, bundle]);
    run('umoci', ['config', '--image', `${tmpLayout}:v2`, '--tag', 'v2']);
    run('umoci', [
      'config',
      '--image',
      `${tmpLayout}:v2`,
      '--tag',
      'cfg',
      '--config.user',
      'app',
      '--config.workingdir',
      '/home/app',
      '--config.env',
      'FOO=bar',
      '--config.entrypoint',
      '/bin/sh',
      '--config.entrypoint',
      '-c',
      '--config.cmd',
      'id -u; pwd; echo $FOO',
    ]);
    run('umoci', ['gc', '--layout', tmpLayout]);
    rmSync(layout, { recursive: true, force: true });
    renameSync(tmpLayout, layout);
    rmSync(work, { recursive: true, force: true });
    writeFileSync(stamp, new Date().toISOString());
    return layout;
  } finally {
    release();
  }
}

/**
 * Copies a fixture (or shared) image into a conveyor store as `ref`, with skopeo:
 * an independent writer of our store format.
 */
export function importToStore(layoutAndTag: string, storeRoot: string, ref: string): void {
  mkdirSync(storeRoot, { recursive: true });
  run('skopeo', ['copy', '-q', `oci:${layoutAndTag}`, `oci:${storeRoot}:${ref}`]);
}
