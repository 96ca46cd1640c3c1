/**
 * The store's directories of unrelated trees (layers/, containers/, volumes/) are marked the top of directory
 * hierarchies for ext4's allocator when the tools make them (lib-common/src/top-dir.ts: `chattr +T`), and the
 * mark is only a hint: without chattr, or where it fails, the tools work the same.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { markTopOfHierarchies } from '../lib-common/src/top-dir.js';
import { busyboxLayout, importToStore } from './helpers/fixtures.js';
import { imageRecord, removeStore, tempStore } from './helpers/rootfs.js';
import { runTool } from './helpers/tools.js';

/** ext2/3/4 report one magic, shown by stat -f as "ext2/ext3". */
const isExt4 = (dir: string) => execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim() === 'ext2/ext3';
/** The flags lsattr shows for the directory itself, e.g. "-------------Te-------". */
const flagsOf = (dir: string) => execFileSync('lsattr', ['-d', dir], { encoding: 'utf8' }).split(' ')[0];

/** busybox imported into store `root` and unpacked there by layer-unpack (whose store paths are made as the tools make them). */
function unpackBusybox(root: string, env?: NodeJS.ProcessEnv) {
  const ref = 'docker.io/library/busybox:latest';
  importToStore(`${busyboxLayout()}:latest`, root, ref);
  return runTool('layer-unpack', ['--root', root], { env, input: `${JSON.stringify(imageRecord(root, ref))}\n` });
}

t.test('markTopOfHierarchies: set on an ext4 directory; false, never a throw, elsewhere', async (t) => {
  const base = mkdtempSync('/tmp/conveyor-topdir-');
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  if (isExt4(base)) {
    t.equal(await markTopOfHierarchies(base), true);
    t.match(flagsOf(base), /T/, 'FS_TOPDIR_FL set');
  } else {
    t.comment(`/tmp is not ext4 here: only the failure cases run`);
  }
  t.equal(await markTopOfHierarchies(join(base, 'missing')), false, 'a missing directory: false');
  t.equal(typeof (await markTopOfHierarchies('/proc')), 'boolean', 'procfs (no such flag): a result, not a throw');
});

t.test('the tools mark layers/, containers/ and volumes/ when they make them', async (t) => {
  const root = tempStore('conveyor-topdir-store-');
  t.teardown(() => removeStore(root));
  const unpack = await unpackBusybox(root);
  t.equal(unpack.code, 0, unpack.stderr);
  const run = await runTool('ctr-spawn', ['--root', root, '--rm', '--net', 'none', '-v', 'topdir-data:/data', '--', '/bin/true'], {
    input: `${JSON.stringify(unpack.records[0])}\n`,
  });
  t.equal(run.code, 0, run.stderr);
  if (!isExt4(root)) return t.comment('the store is not on ext4 here: nothing to mark');
  for (const dir of ['layers', 'containers', 'volumes']) t.match(flagsOf(join(root, dir)), /T/, `${dir}/ is marked`);
  t.notMatch(flagsOf(root), /T/, 'the store root is not (its children are one layout)');
  const [layer] = execFileSync('ls', [join(root, 'layers')], { encoding: 'utf8' }).split('\n');
  t.notMatch(flagsOf(join(root, 'layers', layer)), /T/, 'not inherited: a layer keeps its tree beside it');
});

t.test('without a working chattr the store is made and used the same', async (t) => {
  const root = tempStore('conveyor-topdir-nochattr-');
  const bin = mkdtempSync('/tmp/conveyor-topdir-bin-');
  t.teardown(() => {
    removeStore(root);
    rmSync(bin, { recursive: true, force: true });
  });
  // A chattr that fails first on PATH, as on a system without e2fsprogs or a filesystem refusing the flag.
  writeFileSync(join(bin, 'chattr'), '#!/bin/sh\necho "chattr: Operation not supported" >&2\nexit 1\n');
  chmodSync(join(bin, 'chattr'), 0o755);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
  const unpack = await unpackBusybox(root, env);
  t.equal(unpack.code, 0, unpack.stderr);
  t.equal(unpack.stderr, '', 'nothing reported: the flag is a hint');
  t.equal(unpack.records[0]?.type, 'rootfs');
  const run = await runTool('ctr-spawn', ['--root', root, '--rm', '--net', 'none', '--', '/bin/true'], {
    env,
    input: `${JSON.stringify(unpack.records[0])}\n`,
  });
  t.equal(run.code, 0, run.stderr);
  if (isExt4(root)) t.notMatch(flagsOf(join(root, 'layers')), /T/, 'layers/ made, unmarked');
});
