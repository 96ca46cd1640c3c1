/**
 * FROM images and `COPY --from=IMAGE`: found in the store (unless `--pull`),
 * else pulled by running `img-fetch REF` with the registry flags the build
 * was given, and read back from the store (manifest and config verified by
 * their digests, Store.readBlob). A pulled image is about to be mounted (a
 * build that has to pull its base cannot be all cache hits), so img-fetch's
 * `layer` records are piped into `layer-unpack` as they come, as in
 * `img-fetch | layer-unpack`: layer N unpacks while layer N+1 downloads.
 */
import { ConveyorError, ERROR_CODES, type ErrorCode } from '@conveyor/lib-common/errors';
import { readStoredImage, type StoredImage } from '@conveyor/lib-common/image';
import { lookupLocalImage } from '@conveyor/lib-common/local-image';
import { jsonLinesOf } from './lines.js';
import type { Store } from '@conveyor/lib-common/store';
import type { SubprocessResult } from '@conveyor/lib-common/subprocess';
import type { ToolRunner } from './tools.js';

export interface BaseImageOptions {
  store: Store;
  runner: ToolRunner;
  /** Fetch even when the store has it. */
  pull: boolean;
  /** img-fetch flags: registry flags, --root, --log-format. */
  fetchArgs: string[];
  /** layer-unpack flags (--root, --log-format); without them the layers are not unpacked while pulling. */
  unpackArgs?: string[];
  /** Where img-fetch's stderr goes (its messages and progress). */
  onStderr: (chunk: Buffer) => void;
}

/** `what` names the instruction in messages (`FROM x`, `COPY --from=x`). */
export async function baseImage(ref: string, options: BaseImageOptions, what = `FROM ${ref}`): Promise<StoredImage> {
  const { store } = options;
  const local = await lookupLocalImage(store, ref);
  if (local && !options.pull) return readStoredImage(store, local.entry);
  // Refetched with --pull, an image the store had is most likely unchanged and its layers unpacked already.
  const unpacking = options.unpackArgs !== undefined && !local;
  const child = options.runner.start('img-fetch', [...options.fetchArgs, ...(unpacking ? [] : ['--no-layers']), '--', ref], {
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: !unpacking,
  });
  child.stderr?.on('data', (chunk: Buffer) => options.onStderr(chunk));
  let unpacked: Promise<SubprocessResult> | undefined;
  if (unpacking) {
    const unpack = options.runner.start('layer-unpack', options.unpackArgs ?? [], { stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
    unpack.stderr?.on('data', (chunk: Buffer) => options.onStderr(chunk));
    child.stdout?.pipe(unpack.stdin!);
    unpacked = unpack.result;
  }
  const [result, unpackResult] = await Promise.all([child.result, unpacked]);
  if (result.failed || unpackResult?.failed) {
    // layer-unpack passes img-fetch's error record on (protocol rule 8): the first failure is in its output.
    const failure = jsonLinesOf(unpackResult?.stdout ?? result.stdout).find((r) => r.type === 'error');
    throw new ConveyorError(
      typeof failure?.code === 'string' && failure.code in ERROR_CODES ? (failure.code as ErrorCode) : 'ERR_IMAGE_NOT_FOUND',
      `${what}: ${result.failed ? 'img-fetch' : 'layer-unpack'} failed${typeof failure?.message === 'string' ? `: ${failure.message}` : ` (${result.failed ? result.shortMessage : unpackResult?.shortMessage})`}`,
      { hint: "check the name, the registry flags (--insecure-registry, --plain-http) and img-fetch's message above" },
    );
  }
  const pulled = await lookupLocalImage(store, ref);
  if (!pulled) throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${what}: img-fetch ended but the store has no such image`);
  return readStoredImage(store, pulled.entry);
}
