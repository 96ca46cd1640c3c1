/**
 * What img-build's own tests share: a temp store holding the busybox fixture
 * (umoci-built, test/helpers/fixtures.ts) as docker.io/library/busybox:latest
 * and :v2, builds through the real bin, and running a built image the way a
 * user would (img-ls | layer-unpack | ctr-spawn).
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxLayout, importToStore } from '../../../../test/helpers/fixtures.js';
import { removeStore, tempStore } from '../../../../test/helpers/rootfs.js';
import { runTool, runToolSync, type ToolResult } from '../../../../test/helpers/tools.js';

export interface BuildStore {
  root: string;
  cleanup(): void;
}

/** A fresh store with busybox:latest and busybox:v2 (v2 adds /hello.txt). */
export function storeWithBusybox(): BuildStore {
  const root = tempStore('conveyor-build-');
  importToStore(`${busyboxLayout()}:latest`, root, 'docker.io/library/busybox:latest');
  importToStore(`${busyboxLayout()}:v2`, root, 'docker.io/library/busybox:v2');
  return { root, cleanup: () => removeStore(root) };
}

/** `img-build --root ROOT ARGS…` (the context is the caller's last argument). */
export function imgBuild(root: string, args: string[], env?: NodeJS.ProcessEnv): Promise<ToolResult> {
  return runTool('img-build', ['--root', root, ...args], { env: env ? { ...process.env, ...env } : undefined, timeoutMs: 120_000 });
}

/** Runs `command` in the image `ref` of the store: img-ls | layer-unpack | ctr-spawn. */
export function runImage(root: string, ref: string, command: string[], spawnArgs: string[] = []): ToolResult {
  const listed = runToolSync('img-ls', ['--root', root, '--json', ref]);
  if (listed.code !== 0) throw new Error(`img-ls ${ref}: ${listed.stderr}`);
  const unpacked = runToolSync('layer-unpack', ['--root', root], { input: listed.stdout });
  if (unpacked.code !== 0) throw new Error(`layer-unpack ${ref}: ${unpacked.stderr}`);
  return runToolSync('ctr-spawn', ['--root', root, ...spawnArgs, '--', ...command], { input: unpacked.stdout });
}

/** Container dirs left in the store (a build removes each step's). */
export function containerDirs(root: string): string[] {
  const dir = join(root, 'containers');
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** Overlay mounts under the store's parent (none once a build is over). */
export function mountsUnder(root: string): string[] {
  const base = root.replace(/\/[^/]+$/, '');
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p) => p?.startsWith(base + '/'));
}

/** The progress events of a `--progress=json` run's stderr. */
export function stepEvents(result: ToolResult): Record<string, any>[] {
  return result.logs.filter((l) => l.type === 'progress' && l.action === 'step' && l.phase === 'done');
}

export interface Tree {
  [name: string]: string | Tree;
}

/**
 * A build context made of `tree` in a fresh temp dir, removed after the test.
 * Not t.testdir: its fixtures live in the checkout's .tap/, which other tap
 * runs in the same checkout may clear while a build reads them.
 */
export function contextDir(t: { teardown(fn: () => void): void }, tree: Tree): string {
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-build-context-'));
  const write = (at: string, node: Tree) => {
    for (const [name, value] of Object.entries(node)) {
      if (typeof value === 'string') writeFileSync(join(at, name), value);
      else {
        mkdirSync(join(at, name));
        write(join(at, name), value);
      }
    }
  };
  write(dir, tree);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
