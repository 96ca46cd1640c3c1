/**
 * Containers whose state.json says created or running while the process that
 * owns them (the supervisor of a detached container, else the container's
 * process) is gone: a kill -9 or a crash left nobody to record the end.
 * lib-common container/state `observe` is the judge; every control-plane tool
 * already shows such a container as exited.
 *
 * --repair records the end in state.json (exited, exit code unknown,
 * finishedAt now) under the container's lock, as ctr-stop does for a
 * container without a supervisor. The container itself stays (Docker keeps
 * exited containers): `ctr-rm` removes it with its mounts and cgroups.
 *
 * Failure: a state.json that cannot be read is warned about (listContainers)
 * and skipped; the filesystem's errors while writing propagate.
 */
import { listContainers, observe, readState, updateState } from '@conveyor/lib-common/container/state';
import type { Store } from '@conveyor/lib-common/store';
import type { Report } from './problems.js';

export async function checkContainers(store: Store, report: Report, warn: (message: string) => void): Promise<void> {
  for (const entry of await listContainers(store, { warn })) {
    if (!entry.state) continue;
    report.checked.containers++;
    // listContainers gives the observed state; what the file says is what may be stale.
    const recorded = await readState(store, entry.id).catch(() => undefined);
    if (!recorded) continue;
    const seen = observe(recorded);
    if (seen.status === recorded.status) continue;
    let repaired = false;
    if (report.repair) {
      const now = new Date().toISOString();
      const updated = await updateState(store, entry.id, (state) => {
        const observed = observe(state);
        return observed.status === state.status ? undefined : { ...observed, finishedAt: state.finishedAt ?? now };
      });
      repaired = updated !== undefined && updated.status === 'exited';
    }
    await report.problem({
      code: 'FSCK_CONTAINER_DEAD',
      path: `containers/${entry.id}`,
      id: entry.id,
      message: `container ${entry.id.slice(0, 12)}${recorded.name ? ` (${recorded.name})` : ''} is recorded ${recorded.status} but ${seen.statusDetail ?? 'its process is gone'}${repaired ? ': recorded as exited (ctr-rm removes it)' : ''}`,
      repaired,
    });
  }
}
