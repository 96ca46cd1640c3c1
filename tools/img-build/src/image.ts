/**
 * Writing the built image: its config blob (the stage's state, `created` set,
 * `--label`s applied), an OCI manifest, each `-t` name in index.json (one
 * unnamed entry when there is none, so the store keeps it and img-ls lists it
 * by digest), and the `image` records that describe it. An unchanged
 * rebuild leaves index.json alone (Store.updateIndex writes only a change).
 */
import { sha256 } from '@conveyor/lib-common/digest';
import { buildImageRecord, type ImageManifest } from '@conveyor/lib-common/image';
import { MEDIA_TYPES } from '@conveyor/lib-common/mediatypes';
import type { Descriptor, ImageRecord } from '@conveyor/lib-common/records';
import { REF_NAME_ANNOTATION, IMAGE_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';
import type { BuildState } from './cache.js';
import type { RunConfig } from './config.js';
import { writeConfigBlob } from './cache.js';

export interface WriteImageOptions {
  store: Store;
  state: BuildState;
  /** Normalised references to tag. */
  tags: string[];
  /** `--label` pairs, applied last (as Docker applies them). */
  labels: [string, string][];
  /** The image's `created`, when the state's last history entry has none. */
  created: string;
}

export interface WrittenImage {
  manifestDescriptor: Descriptor;
  records: ImageRecord[];
}

export async function writeImage(options: WriteImageOptions): Promise<WrittenImage> {
  const { store, state } = options;
  const config = structuredClone(state.config);
  const run = { ...(config.config ?? {}) } as RunConfig;
  if (options.labels.length > 0) run.Labels = { ...(run.Labels ?? {}), ...Object.fromEntries(options.labels) };
  config.config = run as typeof config.config;
  // The time of the last step, so a rebuild from the cache gives the same config (and image) digest.
  const history = config.history ?? [];
  config.created = history.length > 0 && history[history.length - 1].created ? history[history.length - 1].created : options.created;
  const configDescriptor = await writeConfigBlob(store, config);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    config: configDescriptor,
    layers: state.layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  const manifestDescriptor: Descriptor = { mediaType: MEDIA_TYPES.ociManifest, digest: sha256(manifestBytes), size: manifestBytes.length };
  await store.writeBlob(manifestDescriptor.digest, manifestBytes);
  const named = (m: Descriptor) => m?.annotations?.[REF_NAME_ANNOTATION] !== undefined || m?.annotations?.[IMAGE_NAME_ANNOTATION] !== undefined;
  // An unchanged rebuild changes nothing here, and Store.updateIndex then writes nothing (no rewrite, no fsync).
  if (options.tags.length === 0) {
    await store.updateIndex((index) => {
      if (!index.manifests.some((m) => m?.digest === manifestDescriptor.digest && !named(m))) index.manifests.push(manifestDescriptor);
    });
  }
  if (options.tags.length > 0) await store.tagManifest(options.tags, manifestDescriptor);
  const refs = options.tags.length > 0 ? options.tags : [manifestDescriptor.digest];
  const records = refs.map((ref) => buildImageRecord({ ref, manifestDescriptor, manifest, config, store: store.root }));
  return { manifestDescriptor, records };
}
