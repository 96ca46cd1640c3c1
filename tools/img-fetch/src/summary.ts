/**
 * What img-fetch prints on a terminal instead of records, as `docker pull`
 * does: the image, a line per layer (downloaded, or already in the store),
 * the digest and a status line. Library code: a pull's result in, text out;
 * names come from registries (hostile), so they are made printable.
 */
import { formatBytes } from '@conveyor/lib-common/bytes';
import { printable } from '@conveyor/lib-common/log';
import type { FetchResult } from './fetch.js';

export function pullSummary(result: FetchResult): string {
  const { record } = result;
  const downloaded = new Set(result.downloadedDigests);
  const lines = [`${record.ref}: ${result.source === 'pulled' ? 'pulled' : 'found in the store'}`];
  for (const layer of record.layers) {
    const status = downloaded.has(layer.digest) ? 'Pull complete' : 'Already exists';
    lines.push(`${layer.digest.slice(7, 19)}: ${status.padEnd(14)} ${formatBytes(layer.size)}`);
  }
  lines.push(`Digest: ${record.indexDigest ?? record.digest}`);
  const status = result.source === 'store' || downloaded.size === 0 ? `Image is up to date for ${record.ref}` : `Downloaded newer image for ${record.ref}`;
  lines.push(`Status: ${status} (${downloaded.size} of ${record.layers.length} layers downloaded, ${formatBytes(record.size)})`);
  return `${lines.map(printable).join('\n')}\n`;
}
