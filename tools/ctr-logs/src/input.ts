/**
 * The container to print when none is named: the first `container` record
 * on stdin (ctr-ls output); other records are skipped. Its id is checked
 * before it is used, since it becomes a path in the store.
 *
 * Failure: ERR_INPUT_RECORD (exit 2) for a malformed line (`stdin:N`), a
 * container record without a valid id, or no container record at all;
 * ERR_UPSTREAM_FAILED (said nothing more) when the input held only an
 * upstream `error` record.
 */
import type { Readable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';
import { readLines } from '@conveyor/lib-common/ndjson';
import { pipeline } from '@conveyor/lib-common/pipeline';
import { badRecord } from '@conveyor/lib-common/records';
import { isContainerId } from '@conveyor/lib-common/store';

export async function containerQuery(input: Readable): Promise<string> {
  for await (const { record, source, line } of readLines(input)) {
    if (record?.type !== 'container') continue;
    if (!isContainerId(record.id)) throw badRecord(`${source}:${line}`, 'container record without a valid id (64 hex characters)');
    input.destroy();
    return record.id;
  }
  throw (
    pipeline.nothingButUpstreamFailure() ??
    new ConveyorError('ERR_INPUT_RECORD', 'no container named and no container record on stdin', { hint: 'ctr-logs NAME, or ctr-ls | ctr-logs' })
  );
}
