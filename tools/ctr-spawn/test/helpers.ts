/** Running the built ctr-spawn (and overlay-mount) as a user would, and checking what a run leaves behind. */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../../test/helpers/fixtures.js';

export const CTR_SPAWN = join(REPO_ROOT, 'tools', 'ctr-spawn', 'bin', 'ctr-spawn.js');
export const OVERLAY_MOUNT = join(REPO_ROOT, 'tools', 'overlay-mount', 'bin', 'overlay-mount.js');

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a tool with `input` on stdin. `onStdout` sees output as it arrives (with the child, to signal it). */
export function runTool(bin: string, args: string[], input: string, onStdout?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      onStdout?.(stdout, child);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(input);
  });
}

export function ctrSpawn(record: object, args: string[], onStdout?: (text: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return runTool(CTR_SPAWN, args, JSON.stringify(record) + '\n', onStdout);
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
    for (const entry of readdirSync(dir)) if (/^[a-f0-9]{64}$/.test(entry) && (!id || entry === id)) found.push(join(dir, entry));
  }
  return found;
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
  return Object.fromEntries(stdout.trim().split('\n').filter(Boolean).map((line) => line.split(' ', 2)));
}
