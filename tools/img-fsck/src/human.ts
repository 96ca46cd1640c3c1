/**
 * img-fsck for a terminal: one line per problem as it is found (code, path,
 * what is wrong, and whether it was repaired), and the summary line that also
 * ends a piped run on stderr. Pure.
 */
import type { FsckRecord, ProblemRecord } from './problems.js';
import { printable } from '@conveyor/lib-common/log';

export function problemLine(record: ProblemRecord): string {
  return `${record.code.padEnd(26)} ${record.repaired ? 'repaired ' : ''}${printable(record.message)}\n`;
}

export function summaryLine(summary: FsckRecord): string {
  const { blobs, images, layers, containers } = summary.checked;
  const checked = `checked ${blobs} blob(s), ${images} image(s), ${layers} layer(s), ${containers} container(s)`;
  const unverified = summary.unverifiedLayers > 0 ? `; ${summary.unverifiedLayers} layer(s) without a tree checksum` : '';
  const left = summary.problems - summary.repaired;
  const outcome =
    summary.problems === 0
      ? 'no problems'
      : `${summary.problems} problem(s), ${summary.repaired} repaired${left > 0 ? `, ${left} left${summary.repair ? '' : ' (--repair fixes them)'}` : ''}`;
  return `${checked}${unverified}: ${outcome}\n`;
}
