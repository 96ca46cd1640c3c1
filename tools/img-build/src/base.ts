/**
 * FROM images and `COPY --from=IMAGE`: found in the store (unless `--pull`),
 * else pulled by running `img-fetch REF` with the registry flags the build
 * was given, and read back from the store (manifest and config verified by
 * their digests, Store.readBlob).
 */
import { ConveyorError, ERROR_CODES, type ErrorCode } from '@conveyor/lib-common/errors';
import { readStoredImage, type StoredImage } from '@conveyor/lib-common/image';
import { lookupLocalImage } from '@conveyor/lib-common/local-image';
import { jsonLinesOf } from './lines.js';
import type { Store } from '@conveyor/lib-common/store';
import type { ToolRunner } from './tools.js';

export interface BaseImageOptions {
  store: Store;
  runner: ToolRunner;
  /** Fetch even when the store has it. */
  pull: boolean;
  /** img-fetch flags: registry flags, --root, --log-format. */
  fetchArgs: string[];
  /** Where img-fetch's stderr goes (its messages and progress). */
  onStderr: (chunk: Buffer) => void;
}

/** `what` names the instruction in messages (`FROM x`, `COPY --from=x`). */
export async function baseImage(ref: string, options: BaseImageOptions, what = `FROM ${ref}`): Promise<StoredImage> {
  const { store } = options;
  if (!options.pull) {
    const local = await lookupLocalImage(store, ref);
    if (local) return readStoredImage(store, local.entry);
  }
  const child = options.runner.start('img-fetch', [...options.fetchArgs, ref], { stdout: 'pipe', stderr: 'pipe' });
  child.stderr?.on('data', (chunk: Buffer) => options.onStderr(chunk));
  const result = await child.result;
  if (result.failed) {
    const failure = jsonLinesOf(result.stdout).find((r) => r.type === 'error');
    throw new ConveyorError(
      typeof failure?.code === 'string' && failure.code in ERROR_CODES ? (failure.code as ErrorCode) : 'ERR_IMAGE_NOT_FOUND',
      `${what}: img-fetch failed${typeof failure?.message === 'string' ? `: ${failure.message}` : ` (${result.shortMessage})`}`,
      { hint: "check the name, the registry flags (--insecure-registry, --plain-http) and img-fetch's message above" },
    );
  }
  const local = await lookupLocalImage(store, ref);
  if (!local) throw new ConveyorError('ERR_IMAGE_NOT_FOUND', `${what}: img-fetch ended but the store has no such image`);
  return readStoredImage(store, local.entry);
}
