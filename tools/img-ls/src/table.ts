/**
 * img-ls's table for terminals, the columns `docker images` prints. Library
 * code: records in, text out.
 */
import { formatBytes } from '@conveyor/lib-common/bytes';
import type { ImageRecord } from '@conveyor/lib-common/records';
import { familiarName, parseReference } from '@conveyor/lib-common/reference';
import { formatTable, timeAgo } from '@conveyor/lib-common/table';

export const IMAGE_TABLE_HEADERS = ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'];

/** One image's row: familiar name, tag, config digest's first 12 hex (Docker's IMAGE ID), age, size. */
export function imageRow(image: ImageRecord, now = Date.now()): string[] {
  let name = image.ref;
  let tag = '<none>';
  try {
    const ref = parseReference(image.ref);
    name = familiarName({ ...ref, tag: undefined, digest: undefined });
    tag = ref.tag ?? '<none>';
  } catch {
    // An entry another tool named freely (a bare tag, a digest): shown as it is.
  }
  return [name, tag, image.configDescriptor.digest.slice(7, 19), timeAgo(image.created, now), formatBytes(image.size)];
}

export function imageTable(images: ImageRecord[], now = Date.now()): string {
  return formatTable(
    IMAGE_TABLE_HEADERS,
    images.map((image) => imageRow(image, now)),
  );
}
