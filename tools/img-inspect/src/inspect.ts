/**
 * The `inspect` record of one local image, as `docker image inspect` shows
 * it: the image record's fields, the names the store knows it by, Docker's
 * Id (the config digest) and RepoDigests, the unpacked size, and the whole
 * manifest, config and history as the image has them. Library code: the
 * image is already read and validated (lib-common/image-input); this only
 * shapes it. Reads the layer blobs' trailers for the unpacked size; never throws.
 */
import { imageUnpackedSize, layerUnpackedSize } from '@conveyor/lib-common/image';
import { historyRecords, type HistoryRecord } from '@conveyor/lib-common/image-history';
import type { LocalImageFound } from '@conveyor/lib-common/image-input';
import { entryReferences, literalNames, normalisedName, repoDigestOf } from '@conveyor/lib-common/local-image';
import type { ImageRecord } from '@conveyor/lib-common/records';
import { formatReference } from '@conveyor/lib-common/reference';
import type { Store } from '@conveyor/lib-common/store';

export interface InspectRecord extends Omit<ImageRecord, 'type'> {
  type: 'inspect';
  /** Docker's image Id: the config digest. */
  id: string;
  /** Every name the store knows the image by, normalised (docker's RepoTags); names that are no reference as written. */
  repoTags: string[];
  /** `repository@digest` of each name: the digest a registry serves the image by (docker's RepoDigests). */
  repoDigests: string[];
  /** Sum of the layers' unpacked sizes (compressed where unknown). */
  unpackedSize: number;
  /** The manifest, whole. */
  manifest: unknown;
  /** The config blob, whole (architecture, os, config, rootfs, history...). */
  imageConfig: unknown;
  /** The history, newest first, as img-history's records without type, v and ref. */
  history: Omit<HistoryRecord, 'type' | 'v' | 'ref'>[];
}

export async function inspectRecord(store: Store, image: LocalImageFound): Promise<InspectRecord> {
  const { record, manifest, config, local } = image;
  const references = entryReferences(local.entry);
  const repoDigest = repoDigestOf(local.entry);
  const unparsed = literalNames(local.entry).filter((name) => normalisedName(name) === undefined);
  const repoTags = [...new Set([...references.filter((r) => r.tag).map(formatReference), ...unparsed])];
  const repoDigests = [...new Set(references.map((r) => `${r.registry}/${r.repository}@${repoDigest}`))];
  const sizes: number[] = [];
  for (const layer of manifest.layers) sizes.push((await layerUnpackedSize(store, layer)) ?? layer.size);
  const history = historyRecords(record.ref, manifest, config, sizes).map(({ type: _t, v: _v, ref: _r, ...entry }) => entry);
  const { type: _type, ...fields } = record;
  return {
    type: 'inspect',
    ...fields,
    id: record.configDescriptor.digest,
    repoTags,
    repoDigests,
    unpackedSize: await imageUnpackedSize(store, record.layers),
    manifest,
    imageConfig: config,
    history,
  };
}
