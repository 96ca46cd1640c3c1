/** Running the built ctr-spawn (and overlay-mount) as a user would, and checking what a run leaves behind. */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { isContainerId } from '@conveyor/lib-common/store';
import { REPO_ROOT } from '../../../test/helpers/fixtures.js';
import { type AsyncToolOptions, runTool, type ToolResult } from '../../../test/helpers/tools.js';

/** Runs the built ctr-spawn with `record` as its stdin (environment inherited); `onStdout` sees output as it arrives, with the child to signal it. */
export function ctrSpawn(record: object, args: string[], onStdout?: AsyncToolOptions['onStdout']): Promise<ToolResult> {
  return runTool('ctr-spawn', args, { input: JSON.stringify(record) + '\n', onStdout });
}

/** Mount points under `dir` in our mount namespace. */
export function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p) => p !== undefined && (p === dir || p.startsWith(dir + '/')));
}

export function containerDirs(store: string): string[] {
  const dir = join(store, 'containers');
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** cgroup directories named like a conveyor container, in every hierarchy. */
export function conveyorCgroups(id?: string): string[] {
  const found: string[] = [];
  for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
    const dir = join('/sys/fs/cgroup', hierarchy, 'conveyor');
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir)) if (isContainerId(entry) && (!id || entry === id)) found.push(join(dir, entry));
  }
  return found;
}

/** The host pid of a running container's first process, from the runtime's state (`runc state`). */
export function containerPid(shortId: string, runtimeRoot = '/run/conveyor-runc'): number {
  const id = readdirSync(runtimeRoot).find((entry) => isContainerId(entry) && entry.startsWith(shortId));
  if (!id) throw new Error(`no runtime state for container ${shortId} in ${runtimeRoot}`);
  const state = JSON.parse(execFileSync('runc', ['--root', runtimeRoot, 'state', id], { encoding: 'utf8' })) as { pid: number };
  return state.pid;
}

export interface CgroupDir {
  version: 1 | 2;
  /** The directory on the host holding the controller's files for the process. */
  dir: string;
}

/**
 * Where `controller` keeps the files of process `pid`, on cgroup v1 or v2:
 * the process's line for it in /proc/<pid>/cgroup (read from the host's
 * cgroup namespace, so the full path), under the mount point of that
 * hierarchy in our /proc/self/mountinfo. A v1 hierarchy of the controller
 * wins (a hybrid layout); otherwise the unified one, if the controller is
 * enabled there. Undefined when the controller is in neither.
 */
export function cgroupDirOf(pid: number, controller: string): CgroupDir | undefined {
  const memberships = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [hierarchy, controllers, ...path] = line.split(':');
      return { hierarchy, controllers: controllers ? controllers.split(',') : [], path: path.join(':') };
    });
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [before, after] = line.split(' - ');
      const fields = before.split(' ');
      const [fstype, , superOptions] = after.split(' ');
      return { root: fields[3], point: fields[4], fstype, options: superOptions.split(',') };
    });
  const v1 = memberships.find((m) => m.controllers.includes(controller));
  const v1Mount = mounts.find((m) => m.fstype === 'cgroup' && m.options.includes(controller));
  if (v1 && v1Mount) return { version: 1, dir: join(v1Mount.point, relative(v1Mount.root, v1.path)) };
  const unified = memberships.find((m) => m.hierarchy === '0' && m.controllers.length === 0);
  const v2Mount = mounts.find((m) => m.fstype === 'cgroup2');
  if (!unified || !v2Mount) return undefined;
  const dir = join(v2Mount.point, relative(v2Mount.root, unified.path));
  const enabled = existsSync(join(dir, 'cgroup.controllers')) ? readFileSync(join(dir, 'cgroup.controllers'), 'utf8').trim().split(' ') : [];
  return enabled.includes(controller) ? { version: 2, dir } : undefined;
}

/**
 * Compiles test/fixtures/seccomp-probe.c (static, gcc and libc6-dev from
 * Debian) into `dir` and returns the directory, to be bind-mounted into a
 * container: `-v DIR:/probe:ro -- /probe/seccomp-probe NAME...`.
 */
export function buildSeccompProbe(dir: string): string {
  const source = join(REPO_ROOT, 'tools', 'ctr-spawn', 'test', 'fixtures', 'seccomp-probe.c');
  execFileSync('gcc', ['-static', '-O2', '-o', join(dir, 'seccomp-probe'), source], { stdio: ['ignore', 'ignore', 'inherit'] });
  return dir;
}

/** `NAME RESULT` lines of the probe → { NAME: RESULT }. */
export function probeResults(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(' ', 2)),
  );
}
