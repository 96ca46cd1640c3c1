/**
 * Temporary files of writes that never reached their rename, where the
 * store's collection (gc.ts) does not look: `index.json.<pid>.<rand>.tmp` at
 * the store's top and `state.json.<pid>.<rand>.tmp` in a container's
 * directory (Store.writeFileAtomic's names). One whose pid no longer runs is a
 * leftover (FSCK_LEFTOVER_TEMP); --repair removes it (the file itself, never
 * what a symlink there names). A live writer's is left alone.
 *
 * Failure: problems are reported, not thrown; I/O errors other than a
 * missing directory propagate.
 */
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { processAlive } from '@conveyor/lib-common/lock';
import { isContainerId, type Store } from '@conveyor/lib-common/store';
import type { Report } from './problems.js';

const TEMP = /^(?:index|state)\.json\.(\d+)\.[a-f0-9]+\.tmp$/;

async function names(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
}

/** Whether `name` is a writeFileAtomic temporary file whose writer is gone. Pure but for the process check. */
export function deadTemp(name: string): boolean {
  const match = TEMP.exec(name);
  if (!match) return false;
  const pid = Number(match[1]);
  return !Number.isSafeInteger(pid) || pid <= 0 || !processAlive(pid);
}

export async function checkTempFiles(store: Store, report: Report): Promise<void> {
  const dirs = [''];
  for (const id of await names(store.containersDir)) if (isContainerId(id)) dirs.push(`containers/${id}`);
  for (const dir of dirs) {
    for (const name of await names(join(store.root, dir))) {
      if (!deadTemp(name)) continue;
      const relative = dir === '' ? name : `${dir}/${name}`;
      const path = join(store.root, relative);
      if (!(await lstat(path).catch(() => undefined))) continue;
      if (report.repair) await rm(path, { recursive: true, force: true });
      await report.problem({
        code: 'FSCK_LEFTOVER_TEMP',
        path: relative,
        message: `${relative}: a temporary file whose writer is gone${report.repair ? ': removed' : ''}`,
        repaired: report.repair,
      });
    }
  }
}
