/**
 * A parsed Dockerfile cut into build stages (buildkit's instructions.Parse):
 * the ARGs before the first FROM are global, each FROM opens a stage, `AS name`
 * names it. The FROM image is kept raw: it may use global ARGs, which the
 * builder expands through resolveStep with their values.
 */
import { parseError, quoted } from './messages.js';
import type { Dockerfile, Instruction } from './steps.js';

export interface Stage {
  index: number;
  /** Lower-cased, from `FROM image AS name`. */
  name?: string;
  from: Instruction;
  instructions: Instruction[];
}

/** Docker's rule for stage names (instructions/parse.go validStageName), checked after lower-casing. */
const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

/** FROM's words: the image (unexpanded) and the stage name, or an error message. */
export function parseFromArgs(rest: string): { image: string; name?: string } | { error: string } {
  const words = rest.trim() === '' ? [] : rest.trim().split(/[\t\v\f\r ]+/);
  if (words.length === 3 && words[1].toLowerCase() === 'as') {
    const name = words[2].toLowerCase();
    if (!STAGE_NAME.test(name)) {
      return { error: `invalid name for build stage: ${quoted(words[2])}, name can't start with a number or contain symbols` };
    }
    return { image: words[0], name };
  }
  if (words.length !== 1) return { error: 'FROM requires either one or three arguments' };
  return { image: words[0] };
}

export function splitStages(dockerfile: Dockerfile): { globalArgs: Instruction[]; stages: Stage[] } {
  const file = dockerfile.file ?? 'Dockerfile';
  const globalArgs: Instruction[] = [];
  const stages: Stage[] = [];
  const names = new Map<string, number>();
  for (const instruction of dockerfile.instructions) {
    if (instruction.keyword === 'FROM') {
      const parsed = parseFromArgs(instruction.rest);
      if ('error' in parsed) throw parseError(file, instruction.line, parsed.error);
      if (parsed.name !== undefined) {
        const previous = names.get(parsed.name);
        if (previous !== undefined) {
          throw parseError(file, instruction.line, `duplicate stage name ${quoted(parsed.name)} (first on line ${previous})`);
        }
        names.set(parsed.name, instruction.line);
      }
      stages.push({ index: stages.length, name: parsed.name, from: instruction, instructions: [] });
      continue;
    }
    const current = stages.at(-1);
    if (current) {
      current.instructions.push(instruction);
    } else if (instruction.keyword === 'ARG') {
      globalArgs.push(instruction);
    } else {
      throw parseError(
        file,
        instruction.line,
        `${instruction.keyword} before the first FROM: no build stage in current context`,
        'only ARG may come before FROM',
      );
    }
  }
  if (stages.length === 0) throw parseError(file, dockerfile.instructions.at(-1)?.line ?? 1, 'no FROM instruction');
  return { globalArgs, stages };
}
