/** Builds a conveyor store holding one image made of the given layer tarballs, and reads its image record. */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Store } from '@conveyor/lib-common/store';
import { runToolSync } from '../../../../test/helpers/tools.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export async function storeImage(root: string, ref: string, tars: Buffer[], compression: 'gzip' | 'zstd' | 'none' = 'gzip'): Promise<void> {
  const store = new Store(root);
  await store.init();
  const layers = [];
  for (const tar of tars) {
    let blob = tar;
    let mediaType = 'application/vnd.oci.image.layer.v1.tar';
    if (compression === 'gzip') {
      blob = gzipSync(tar);
      mediaType += '+gzip';
    } else if (compression === 'zstd') {
      blob = execFileSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 1 << 30 });
      mediaType += '+zstd';
    }
    await store.writeBlob(sha(blob), blob);
    layers.push({ mediaType, digest: sha(blob), size: blob.length, diffID: sha(tar) });
  }
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffID) } }),
  );
  await store.writeBlob(sha(config), config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
    }),
  );
  await store.writeBlob(sha(manifest), manifest);
  await store.tagManifest(ref, { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length });
}

/** The image records img-ls prints for the store, as text and parsed. */
export function imageRecords(root: string, ...patterns: string[]): { text: string; records: Record<string, any>[] } {
  const run = runToolSync('img-ls', ['--root', root, ...patterns]);
  if (run.code !== 0) throw new Error(`img-ls --root ${root} ${patterns.join(' ')} exited ${run.code}: ${run.stderr}`);
  return { text: run.stdout, records: run.records };
}
