/**
 * The tree of an archive, built in a directory of the store's tmp/ from the
 * images to export: `docker` (what Docker 24's `docker save` writes and every
 * `docker load` reads: manifest.json, repositories, the configs and the layers
 * uncompressed under blobs/sha256/) or `oci` (an OCI image layout: oci-layout,
 * index.json with ref.name annotations, the blobs as stored). Images sharing a
 * blob hold it once; the same images give the same tree and the same entry
 * order (reproducible archives). A blob that fails verification fails the
 * whole tree (blobs.ts); the caller removes the directory.
 */
import { mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { digestHex } from '@conveyor/lib-common/digest';
import type { ImageManifest } from '@conveyor/lib-common/image';
import type { ImageRecord } from '@conveyor/lib-common/records';
import { familiarName, parseReference } from '@conveyor/lib-common/reference';
import type { Store } from '@conveyor/lib-common/store';
import { linkBlob, writeLayerTar } from './blobs.js';

export type ArchiveFormat = 'docker' | 'oci';

/** One image to export, under the names it is exported as (none: by digest). */
export interface ExportImage {
  record: ImageRecord;
  manifest: ImageManifest;
  names: string[];
}

/** Paths in the tree, relative to it, in the order they are packed (directories before what they hold). */
export interface ArchiveTree {
  entries: string[];
}

/** Docker's short name for a normalised reference with a tag; undefined for one by digest only. */
export function repoTag(name: string): string | undefined {
  const reference = parseReference(name);
  if (!reference.tag || reference.digest) return undefined;
  return familiarName({ ...reference, digest: undefined });
}

/** Folds images that are the same (same manifest) into one, keeping every name once, in order. */
export function mergeImages(images: ExportImage[]): ExportImage[] {
  const byDigest = new Map<string, ExportImage>();
  for (const image of images) {
    const seen = byDigest.get(image.record.digest);
    if (!seen) byDigest.set(image.record.digest, { ...image, names: [...image.names] });
    else for (const name of image.names) if (!seen.names.includes(name)) seen.names.push(name);
  }
  return [...byDigest.values()];
}

/** The `repositories` file docker save writes: repository → tag → top layer id (the last diff_id's hex). */
export function repositoriesFile(images: ExportImage[]): Record<string, Record<string, string>> {
  const repositories: Record<string, Record<string, string>> = {};
  for (const image of images) {
    const top = image.record.layers.at(-1);
    if (!top) continue;
    for (const name of image.names) {
      const tagged = repoTag(name);
      if (!tagged) continue;
      const colon = tagged.lastIndexOf(':');
      const repository = tagged.slice(0, colon);
      repositories[repository] ??= {};
      repositories[repository][tagged.slice(colon + 1)] = digestHex(top.diffID);
    }
  }
  return repositories;
}

export async function buildTree(store: Store, images: ExportImage[], format: ArchiveFormat, dir: string): Promise<ArchiveTree> {
  const merged = mergeImages(images);
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const blobs = new Set<string>();
  const entries = format === 'docker' ? ['manifest.json', 'repositories'] : ['oci-layout', 'index.json'];
  entries.push('blobs', 'blobs/sha256');
  const addBlob = async (digest: string, write: (target: string) => Promise<void>) => {
    const path = `blobs/sha256/${digestHex(digest)}`;
    if (blobs.has(path)) return path;
    blobs.add(path);
    await write(join(dir, path));
    entries.push(path);
    return path;
  };
  if (format === 'docker') {
    const manifest = [];
    for (const image of merged) {
      const config = await addBlob(image.record.configDescriptor.digest, (target) => linkBlob(store, image.record.configDescriptor.digest, target));
      const layers: string[] = [];
      for (const layer of image.record.layers) {
        layers.push(await addBlob(layer.diffID, (target) => writeLayerTar(store, layer.digest, layer.diffID, target)));
      }
      const repoTags = image.names.map(repoTag).filter((tag): tag is string => tag !== undefined);
      manifest.push({ Config: config, RepoTags: repoTags.length > 0 ? repoTags : null, Layers: layers });
    }
    await writeFile(join(dir, 'manifest.json'), `${JSON.stringify(manifest)}\n`);
    await writeFile(join(dir, 'repositories'), `${JSON.stringify(repositoriesFile(merged))}\n`);
    return { entries };
  }
  const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] as unknown[] };
  for (const image of merged) {
    const { record } = image;
    await addBlob(record.digest, (target) => linkBlob(store, record.digest, target));
    await addBlob(record.configDescriptor.digest, (target) => linkBlob(store, record.configDescriptor.digest, target));
    for (const layer of image.manifest.layers) await addBlob(layer.digest, (target) => linkBlob(store, layer.digest, target));
    const { size } = await stat(join(dir, 'blobs', 'sha256', digestHex(record.digest)));
    const descriptor = { mediaType: record.mediaType, digest: record.digest, size, platform: record.platform };
    // One entry per name (skopeo and umoci find an image by its ref.name), or one unnamed entry.
    if (image.names.length === 0) index.manifests.push(descriptor);
    for (const name of image.names) {
      index.manifests.push({ ...descriptor, annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': name } });
    }
  }
  await writeFile(join(dir, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
  await writeFile(join(dir, 'index.json'), `${JSON.stringify(index)}\n`);
  return { entries };
}
