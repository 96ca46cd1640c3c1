/**
 * OOM detection: after a container with a memory limit exits non-zero, the
 * kernel log tells whether the OOM killer ended a process of its cgroup
 * (`oom_memcg=<cgroups path>`), so the user learns why it died (exit 137).
 *
 * Failure: never throws; an unreadable kernel log (/dev/kmsg) means no warning.
 */
import { formatBytes } from '@conveyor/lib-common/bytes';
import { readKernelLog } from '@conveyor/lib-common/kmsg';

/** True when the kernel logged an OOM kill in `cgroupsPath` since `sinceMicros` (uptime). */
export function oomKilled(cgroupsPath: string, sinceMicros: number): boolean {
  const marker = `oom_memcg=${cgroupsPath}`;
  return (
    readKernelLog(
      (m) => {
        const at = m.indexOf(marker);
        return at >= 0 && [',', '/', undefined].includes(m[at + marker.length]);
      },
      1,
      sinceMicros,
    ).length > 0
  );
}

/** The warning for a container the OOM killer ended, or undefined. `startedMicros`: uptime when it was started. */
export function oomWarning(id: string, cgroupsPath: string, memoryLimit: number | undefined, exitCode: number, startedMicros: number): string | undefined {
  if (memoryLimit === undefined || exitCode === 0) return undefined;
  // With 0.1 s of margin before the start.
  if (!oomKilled(cgroupsPath, startedMicros - 100_000)) return undefined;
  return `container ${id.slice(0, 12)} was killed by the OOM killer: memory limit ${formatBytes(memoryLimit, 'binary')} reached (exit ${exitCode})`;
}
