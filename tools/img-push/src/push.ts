/**
 * Pushing one image from the store to a registry. Library code: takes a
 * store, a client factory and callbacks; never touches `process`.
 *
 * Order of work, so that whatever the registry holds at any moment is
 * consistent: the plan (plan.ts: every manifest and blob read and checked in
 * the store, before the network) → every blob, `jobs` at a time (skipped
 * when the registry has it, mounted from another repository of the registry
 * when one is known to hold it, uploaded otherwise: upload.ts) → for an
 * index, its platform manifests by digest → the manifest or index under the
 * target's tag, the registry's Docker-Content-Digest checked → with `to`,
 * the pushed name recorded in the store (as `docker tag` + `docker push`
 * leave it) → the `image` record. A tag is moved only once everything it
 * names is there.
 *
 * On failure it throws a ConveyorError: the store's (ERR_IMAGE_NOT_FOUND,
 * ERR_STORE_CORRUPT), the registry's (upload.ts, error-map.ts), or
 * ERR_DIGEST_MISMATCH when the target is pinned to another digest. The first
 * failing blob stops the others (they are aborted); what was uploaded stays
 * in the registry, so the next push skips it.
 */
import { createReadStream } from 'node:fs';
import { ConveyorError, toConveyorError } from '@conveyor/lib-common/errors';
import { imageRecordFromStore } from '@conveyor/lib-common/image';
import { findLocalImage } from '@conveyor/lib-common/local-image';
import type { Descriptor, ImageRecord } from '@conveyor/lib-common/records';
import { formatReference, parseReference } from '@conveyor/lib-common/reference';
import { REF_NAME_ANNOTATION, type Store } from '@conveyor/lib-common/store';
import type { RegistryClient, RepositoryRef } from '@conveyor/registry/client';
import type { PushBlobResult } from '@conveyor/registry/upload';
import { MountSources } from './mounts.js';
import { planPush } from './plan.js';

/** Names tagManifest sets itself; the rest of an entry's annotations (index digest, platform) go with a new name. */
const NAME_ANNOTATIONS = new Set([REF_NAME_ANNOTATION, 'io.containerd.image.name']);

export interface ProgressSink {
  start(event: ProgressEvent): void;
  update(event: ProgressEvent): void;
  done(event: ProgressEvent): void;
}

interface ProgressEvent {
  id: string;
  action: string;
  current: number;
  total?: number;
  label?: string;
}

export interface PushOptions {
  store: Store;
  /** Creates (once) the registry client. */
  client: () => Promise<RegistryClient>;
  /** Push under this reference instead of the image's own (`--to`). */
  to?: string;
  /** Blobs pushed at once (default 3). */
  jobs?: number;
  /** upload.ts's chunk size: one PUT up to it, PATCHes of it above. */
  chunkSize?: number;
  /** Shared across a run, so a later image mounts what an earlier one pushed. */
  mounts?: MountSources;
  write: (record: object) => Promise<void>;
  progress?: ProgressSink;
  onRetry?: (message: string) => void;
  /** Told when a running img-prune makes the push wait for its lease. */
  onWait?: () => void;
}

export interface PushResult {
  record: ImageRecord;
  /** Blobs by what happened to them. */
  counts: Record<PushBlobResult, number>;
  /** Bytes sent in uploads. */
  uploadedBytes: number;
}

/**
 * Pushes the stored image `input` names (to `options.to` when given) and
 * writes its `image` record. Under a store lease (lease.ts): an img-prune
 * waits for the push (the image could be removed and swept mid-push after an
 * img-rm), and the `--to` name is written before the lease ends.
 */
export async function pushImage(input: string, options: PushOptions): Promise<PushResult> {
  // Outside the lease first: an unknown image is reported without touching the store.
  await findLocalImage(options.store, input);
  const { withLease } = await import('@conveyor/lib-common/lease');
  return withLease(options.store, () => pushLeased(input, options), { onWait: options.onWait });
}

async function pushLeased(input: string, options: PushOptions): Promise<PushResult> {
  const { store } = options;
  const local = await findLocalImage(store, input);
  const target = parseReference(options.to ?? input);
  const targetName = formatReference(target);
  const plan = await planPush(store, local.entry, local.name);
  if (target.digest && target.digest !== plan.top.digest) {
    throw new ConveyorError('ERR_DIGEST_MISMATCH', `${targetName} is pinned to a digest, but ${local.name} is ${plan.top.digest}`, {
      hint: 'push by tag, or pin the digest the image has',
    });
  }
  // Validates the config too, before the first request.
  const record = await imageRecordFromStore(store, local.entry);
  const client = await options.client();
  const repo: RepositoryRef = { registry: target.registry, repository: target.repository };
  const mounts = options.mounts ?? new MountSources();
  await mounts.scanStore(store, repo.registry);

  const counts: Record<PushBlobResult, number> = { exists: 0, mounted: 0, uploaded: 0 };
  let uploadedBytes = 0;
  const abort = new AbortController();
  let firstError: unknown;
  const { pushBlob } = await import('@conveyor/registry/upload');
  const pushOne = async (blob: Descriptor) => {
    const event = { id: blob.digest, action: 'upload', current: 0, total: blob.size, label: blob.digest.slice(7, 19) };
    options.progress?.start(event);
    const result = await pushBlob(
      client,
      repo,
      { descriptor: blob, open: (start, end) => createReadStream(store.blobPath(blob.digest), { start, end: end - 1 }) },
      {
        chunkSize: options.chunkSize,
        mountFrom: mounts.sources(repo.registry, repo.repository, blob.digest),
        signal: abort.signal,
        onProgress: (current) => options.progress?.update({ ...event, current }),
        onRetry: options.onRetry,
      },
    );
    counts[result]++;
    if (result === 'uploaded') uploadedBytes += blob.size;
    options.progress?.done({ ...event, current: blob.size });
  };
  let next = 0;
  const worker = async () => {
    while (next < plan.blobs.length && !abort.signal.aborted) {
      const blob = plan.blobs[next++];
      try {
        await pushOne(blob);
      } catch (error) {
        if (firstError === undefined) firstError = error;
        abort.abort(error);
      }
    }
  };
  const jobs = Math.max(1, Math.min(options.jobs ?? 3, plan.blobs.length || 1));
  await Promise.all(Array.from({ length: jobs }, worker));
  if (firstError !== undefined) throw toConveyorError(firstError);
  mounts.add(
    repo.registry,
    repo.repository,
    plan.blobs.map((b) => b.digest),
  );

  const { putManifest } = await import('@conveyor/registry/upload');
  for (const child of plan.children) await putManifest(client, repo, child.digest, child);
  await putManifest(client, repo, target.tag ?? plan.top.digest, plan.top);

  if (options.to !== undefined && target.tag && targetName !== local.name) {
    // As `docker tag` + `docker push`: the store now knows the image by its
    // pushed name too, which is also how a later push to another repository
    // of this registry finds that it can mount these blobs (mounts.ts).
    const annotations = Object.fromEntries(Object.entries(local.entry.annotations ?? {}).filter(([key]) => !NAME_ANNOTATIONS.has(key)));
    await store.tagManifest(targetName, { ...local.entry, annotations });
  }
  const pushed: ImageRecord = { ...record, ref: targetName };
  await options.write(pushed);
  return { record: pushed, counts, uploadedBytes };
}
