/**
 * The project's tools img-build runs (img-fetch, layer-unpack, ctr-spawn):
 * found as scripts/run.mjs finds them (`tools/<name>/bin/<name>.js` beside
 * this package in a checkout or an install), else on PATH. Every spawn goes
 * through a ToolRunner, so tests can count them (an unchanged rebuild must
 * spawn nothing).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, type Subprocess, type SubprocessOptions } from '@conveyor/lib-common/subprocess';

export type ToolName = 'img-fetch' | 'layer-unpack' | 'ctr-spawn';

/** The executable of a sibling tool and the arguments that come before its own (node for a .js bin). */
export function toolCommand(name: ToolName, nodePath: string): { file: string; prefix: string[] } {
  // dist/tools.js -> tools/img-build -> tools/<name>/bin/<name>.js
  const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', name, 'bin', `${name}.js`);
  if (existsSync(bin)) return { file: nodePath, prefix: [bin] };
  return { file: name, prefix: [] };
}

export interface ToolRunner {
  start(name: ToolName, args: string[], options?: SubprocessOptions): Subprocess;
}

/** Runs the real tools. `spawned` counts each start, by tool. */
export class DefaultToolRunner implements ToolRunner {
  readonly spawned: Record<string, number> = {};

  /** `nodePath`: the node that runs the sibling tools' .js bins (cli.ts passes its own). */
  constructor(private readonly nodePath: string) {}

  start(name: ToolName, args: string[], options: SubprocessOptions = {}): Subprocess {
    this.spawned[name] = (this.spawned[name] ?? 0) + 1;
    const { file, prefix } = toolCommand(name, this.nodePath);
    return startProcess(file, [...prefix, ...args], options);
  }
}
