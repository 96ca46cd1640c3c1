// The runs scripts/build/bundle.mjs trains the code caches of the warm pipeline's tools with (issue
// 17): V8's cache made after a run holds the functions that run compiled, so a tool whose cache was
// made by its real path compiles nothing more on that path, and deserializes no function it does not
// run (a `--help` warm-up misses the run path; an eager cache holds the whole body: 0.5 MB for
// ctr-spawn, which each start deserializes).
//
// The runs share one temporary store (0700, removed at the end) holding a tiny image made here as an
// OCI layout (one gzip layer: /etc/passwd, /etc/group, /bin/true), in the order a pipeline runs:
// img-import of the layout, img-ls, img-fetch --pull=missing of the present image (no registry: the
// name is under .invalid), the store's readers (img-inspect, img-history, img-tag, img-df) and, as
// root, layer-unpack of the present layer (a first run unpacks it, unrecorded) and ctr-spawn of its
// rootfs record with `true` as the runtime: the whole run path, the spec, bundle, state and cleanup,
// but no container.
//
// Failure: a training run that exits non-zero (a tool's change, a store it cannot make) is
// reported by bundle.mjs, which warms that tool up with --help instead (and those whose input it was
// to make): the build does not depend on what the training can reach.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

/** The tiny image's reference: under .invalid (RFC 2606), so that nothing could ever fetch it. */
export const TRAINING_REF = 'conveyor.invalid/build/train:latest';

/** The layer's tar, packed by tar-stream (tar-fs's packer; no hand-made headers): `[name, mode, content?]` members, a directory without content. */
async function packTar(members) {
  const { pack: newPack } = await import('tar-stream');
  const pack = newPack();
  const chunks = [];
  pack.on('data', (chunk) => chunks.push(chunk));
  const done = new Promise((resolve, reject) => pack.on('end', resolve).on('error', reject));
  for (const [name, mode, content] of members)
    pack.entry({ name, mode, mtime: new Date(1_700_000_000_000), type: content === undefined ? 'directory' : 'file' }, content);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

const sha256 = (bytes) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/** This host's platform in OCI's words (img-import takes an image of this platform without --platform). */
const ARCH = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

/** Writes the tiny image (`name`'s, under the reference `ref`) as an OCI layout directory at `dir`; */
async function writeLayout(dir, name, ref) {
  const tar = await packTar([
    ['etc/hostname', 0o644, Buffer.from(`${name}\n`)],
    ['etc/', 0o755],
    ['etc/passwd', 0o644, Buffer.from('root:x:0:0:root:/root:/bin/sh\n')],
    ['etc/group', 0o644, Buffer.from('root:x:0:\n')],
    ['bin/', 0o755],
    ['bin/true', 0o755, Buffer.from('#!/bin/sh\n')],
  ]);
  const layer = gzipSync(tar);
  const config = Buffer.from(
    JSON.stringify({
      architecture: ARCH[process.arch] ?? process.arch,
      os: 'linux',
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['/bin/true'] },
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
    }),
  );
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  for (const blob of [layer, config, manifest]) writeFileSync(join(dir, 'blobs', 'sha256', sha256(blob).slice(7)), blob);
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const entry = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), size: manifest.length };
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...entry, annotations: { 'io.containerd.image.name': ref } }] }));
}

/**
 * The training plan (a promise) in a new temporary directory `dir`: runs in order,
 * each `{ tool, args, stdin?, stdout?, train }` (stdin/stdout: files in `dir`; `train`: its cache is
 * written, else the run only prepares another's input). A run whose stdin was not made (its maker
 * failed) is not run. `close()` removes `dir`.
 */
export async function trainingPlan() {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-train-'));
  const store = join(dir, 'store');
  mkdirSync(store, { mode: 0o700 });
  await writeLayout(join(dir, 'layout'), 'train', TRAINING_REF);
  const root = ['-q', '--root', store];
  const runs = [
    { tool: 'img-import', args: [...root, join(dir, 'layout')], stdout: 'import.ndjson', train: true },
    { tool: 'img-ls', args: ['--root', store], stdout: 'ls.ndjson', train: true },
    // The warm pipeline's path: the image is in the store (a pull's path, trained too, made the warm path's cache 2-3 ms slower).
    { tool: 'img-fetch', args: [...root, '--pull=missing', TRAINING_REF], stdout: 'fetch.ndjson', train: true },
    // The store's readers, on the imported image.
    { tool: 'img-inspect', args: ['--root', store, TRAINING_REF], stdout: 'inspect.ndjson', train: true },
    { tool: 'img-history', args: ['--root', store, TRAINING_REF], stdout: 'history.ndjson', train: true },
    { tool: 'img-tag', args: [...root, TRAINING_REF, `${TRAINING_REF.replace(/:latest$/, '')}:tagged`], stdout: 'tag.ndjson', train: true },
    { tool: 'img-df', args: ['--root', store], stdout: 'df.ndjson', train: true },
  ];
  // Run by a user, these two re-run themselves in the store's user namespace (lib-common/rootless), under a keeper
  // process the training would leave behind, and train only the part before: they keep their --help warm-up.
  if (process.getuid?.() === 0)
    runs.push(
      // img-ls's image record; the first run unpacks its layer, the pipeline's warm path (trained) finds it present.
      { tool: 'layer-unpack', args: root, stdin: 'ls.ndjson', stdout: 'first.ndjson', train: false },
      { tool: 'layer-unpack', args: root, stdin: 'ls.ndjson', stdout: 'rootfs.ndjson', train: true },
      { tool: 'ctr-spawn', args: [...root, '--net', 'none', '--runtime', 'true', '--', '/bin/true'], stdin: 'rootfs.ndjson', train: true },
    );
  return { dir, runs, close: () => rmSync(dir, { recursive: true, force: true }) };
}
