/**
 * `rootfs` records for overlay-mount and ctr-spawn tests, made without
 * layer-unpack: the busybox fixture is imported into a fresh store with skopeo,
 * described by img-ls, and unpacked with `umoci raw unpack` (an independent
 * unpacker) into the store's layer directory of its top chain ID.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from './fixtures.js';
import { runToolSync } from './tools.js';

/**
 * A fresh store directory under /tmp (not tap's testdir: overlays get mounted
 * below it). Closed (0700) like a store the tools create, so tools do not warn
 * about it; its parents are root-owned and closed, so it passes the tools'
 * trust check (assertTrustedStore).
 */
export function tempStore(prefix = 'conveyor-test-', deep = 0): string {
  const base = mkdtempSync(join('/tmp', prefix));
  const root = deep > 0 ? join(base, 'd'.repeat(deep)) : join(base, 'store');
  mkdirSync(root, { recursive: true });
  chmodSync(root, 0o700);
  return root;
}

/**
 * Marks `<root>/layers/<hex>` as an unpacked layer the way layer-unpack does:
 * a meta.json naming its chain ID, without which the tools refuse the
 * directory as a lower layer.
 */
export function writeLayerMeta(root: string, hex: string, diffID: string, parentChainID?: string | null): void {
  const meta = {
    chainID: `sha256:${hex}`,
    diffID,
    ...(parentChainID === undefined ? {} : { parentChainID }),
    digest: diffID,
    mediaType: 'application/vnd.oci.image.layer.v1.tar',
    size: 0,
    unpackedBytes: 0,
    entries: 0,
    time: new Date().toISOString(),
    rootless: false,
    opaqueXattr: 'trusted.overlay.opaque',
  };
  writeFileSync(join(root, 'layers', hex, 'meta.json'), JSON.stringify(meta, null, 2) + '\n');
}

/**
 * Registers `dir` as a tree layer-unpack --flatten built for the store (the
 * register lib-common/src/overlay/flattened.ts keeps), without which the tools refuse
 * a `dir` record.
 */
export function registerFlattened(root: string, dir: string): void {
  const info = statSync(dir, { bigint: true });
  mkdirSync(join(root, 'flattened'), { recursive: true, mode: 0o700 });
  const name = createHash('sha256').update(dir).digest('hex');
  writeFileSync(
    join(root, 'flattened', `${name}.json`),
    JSON.stringify({ dir, dev: String(info.dev), ino: String(info.ino), birth: String(info.birthtimeNs) }) + '\n',
  );
}

/** Removes a temp store; unmounts anything left below it first, so a failed test cannot leak mounts. */
export function removeStore(root: string): void {
  const base = root.replace(/\/[^/]+$/, '');
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p) => p?.startsWith(base + '/'))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) execFileSync('umount', ['-l', m]);
  rmSync(base, { recursive: true, force: true });
}

/** The image record img-ls prints for `ref` in `root`. */
export function imageRecord(root: string, ref: string): Record<string, any> {
  const run = runToolSync('img-ls', ['--root', root, '--json', ref]);
  if (run.code !== 0) throw new Error(`img-ls --root ${root} --json ${ref} exited ${run.code}: ${run.stderr}`);
  const record = run.records.find((r) => r.ref === ref);
  if (!record) throw new Error(`img-ls did not list ${ref}`);
  return record;
}

/**
 * A rootfs record of the busybox fixture's `tag` in store `root`: one layer
 * dir holding the whole unpacked image (or `dir` with flatten).
 */
export function busyboxRootfs(root: string, tag = 'latest', options: { flatten?: boolean } = {}): Record<string, any> {
  const ref = `docker.io/library/busybox:${tag}`;
  importToStore(`${busyboxLayout()}:${tag}`, root, ref);
  const image = imageRecord(root, ref);
  const top = image.layers[image.layers.length - 1].chainID.slice('sha256:'.length);
  const layerDir = join(root, 'layers', top);
  const diff = join(layerDir, 'diff');
  rmSync(layerDir, { recursive: true, force: true });
  mkdirSync(layerDir, { recursive: true });
  execFileSync('umoci', ['raw', 'unpack', '--image', `${busyboxLayout()}:${tag}`, diff], { stdio: 'pipe' });
  writeLayerMeta(root, top, image.layers[image.layers.length - 1].diffID);
  const { type: _t, ...rest } = image;
  if (options.flatten) registerFlattened(root, diff);
  return options.flatten ? { type: 'rootfs', ...rest, dir: diff } : { type: 'rootfs', ...rest, layerDirs: [diff] };
}

/** Adds `count` small layers on top of a rootfs record, each holding /layers/<i>. */
export function addLayers(root: string, record: Record<string, any>, count: number): Record<string, any> {
  const dirs = [...record.layerDirs];
  for (let i = 0; i < count; i++) {
    const hex = execFileSync('sha256sum', { input: `${record.ref} extra ${i}`, encoding: 'utf8' }).slice(0, 64);
    const diff = join(root, 'layers', hex, 'diff');
    mkdirSync(join(diff, 'layers'), { recursive: true });
    writeFileSync(join(diff, 'layers', String(i)), `layer ${i}\n`);
    writeLayerMeta(root, hex, `sha256:${hex}`);
    dirs.push(diff);
  }
  return { ...record, layerDirs: dirs };
}
