/**
 * img-ls's table for terminals, the columns `docker images` prints (with
 * `--digests`, the DIGEST column after TAG). Library code: records in, text out.
 */
import { formatBytes } from '@conveyor/lib-common/bytes';
import { familiarName, parseReference } from '@conveyor/lib-common/reference';
import { formatTable, timeAgo } from '@conveyor/lib-common/table';
import type { ListedImage } from './list.js';

export const IMAGE_TABLE_HEADERS = ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'];
const DIGEST_TABLE_HEADERS = ['REPOSITORY', 'TAG', 'DIGEST', 'IMAGE ID', 'CREATED', 'SIZE'];

/** Docker's IMAGE ID: the config digest's first 12 hex characters. */
export function imageId(image: Pick<ListedImage, 'configDescriptor'>): string {
  return image.configDescriptor.digest.slice(7, 19);
}

/** Repository and tag as docker shows them: familiar name, `<none>` for an image pinned by digest only. */
export function repositoryAndTag(ref: string): [string, string] {
  // An unnamed index entry is listed by its digest, which would otherwise parse as repository `sha256`.
  if (/^sha256:[a-f0-9]{64}$/.test(ref)) return ['<none>', '<none>'];
  try {
    const parsed = parseReference(ref);
    return [familiarName({ ...parsed, tag: undefined, digest: undefined }), parsed.tag ?? '<none>'];
  } catch {
    // A name another tool wrote freely: shown as it is.
    return [ref, '<none>'];
  }
}

/** One image's row: familiar name, tag, (digest,) Docker's IMAGE ID, age, unpacked size. */
export function imageRow(image: ListedImage, now = Date.now(), digests = false): string[] {
  const [name, tag] = repositoryAndTag(image.ref);
  const size = formatBytes(image.unpackedSize ?? image.size);
  return [name, tag, ...(digests ? [image.repoDigest ?? image.digest] : []), imageId(image), timeAgo(image.created, now), size];
}

export function imageTable(images: ListedImage[], options: { now?: number; digests?: boolean } = {}): string {
  const now = options.now ?? Date.now();
  return formatTable(
    options.digests ? DIGEST_TABLE_HEADERS : IMAGE_TABLE_HEADERS,
    images.map((image) => imageRow(image, now, options.digests)),
  );
}
