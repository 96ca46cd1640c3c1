/**
 * The flags each Dockerfile instruction takes (buildkit's instructions/parse.go
 * BFlags), the ones this builder refuses with what to do instead, and the
 * error resolveStep turns into `<file>:<line>: …`.
 */
import { shown } from './messages.js';
import type { Instruction } from './steps.js';

type FlagKind = 'string' | 'bool';

/** The flags Docker accepts, per instruction. Anything else is refused. */
const FLAGS: Record<string, Record<string, FlagKind>> = {
  FROM: { platform: 'string' },
  RUN: { network: 'string' },
  COPY: { from: 'string', chown: 'string', chmod: 'string', link: 'bool' },
  ADD: { chown: 'string', chmod: 'string', link: 'bool', checksum: 'string', 'keep-git-dir': 'bool' },
  HEALTHCHECK: { interval: 'string', timeout: 'string', 'start-period': 'string', 'start-interval': 'string', retries: 'string' },
};

/** Flags Docker has that this builder refuses, with what to do instead. */
const UNSUPPORTED_FLAGS: Record<string, Record<string, string>> = {
  RUN: {
    mount: 'RUN --mount (cache, secret, ssh, bind mounts) is not supported: COPY what the step needs, or fetch it in the RUN',
    security: 'RUN --security is not supported: steps run with ctr-spawn’s default confinement',
    device: 'RUN --device is not supported',
  },
  COPY: {
    parents: 'COPY --parents is not supported: copy each directory to its own destination',
    exclude: 'COPY --exclude is not supported: use .dockerignore',
  },
  ADD: {
    exclude: 'ADD --exclude is not supported: use .dockerignore',
    unpack: 'ADD --unpack is not supported: local tar archives are always extracted, URLs never',
  },
};

/** A problem with one instruction; resolveStep adds the file and line. */
export class StepError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

/** Checks an instruction's flags against the ones it takes; returns their values (`bool` ones as 'true'/'false'). */
export function checkFlags(instruction: Instruction): Record<string, string> {
  const allowed = FLAGS[instruction.keyword] ?? {};
  const refused = UNSUPPORTED_FLAGS[instruction.keyword] ?? {};
  const values: Record<string, string> = {};
  for (const flag of instruction.flags) {
    if (Object.hasOwn(refused, flag.name)) {
      throw new StepError(`${instruction.keyword} --${flag.name} is not supported`, refused[flag.name]);
    }
    const kind = Object.hasOwn(allowed, flag.name) ? allowed[flag.name] : undefined;
    if (kind === undefined) {
      const known = Object.keys(allowed).map((name) => `--${name}`);
      throw new StepError(
        `unknown flag: --${shown(flag.name)} for ${instruction.keyword}`,
        known.length > 0 ? `${instruction.keyword} takes ${known.join(', ')}` : `${instruction.keyword} takes no flags`,
      );
    }
    if (Object.hasOwn(values, flag.name)) throw new StepError(`duplicate flag specified: --${shown(flag.name)}`);
    if (kind === 'bool') {
      if (flag.value !== 'true' && flag.value !== 'false') {
        throw new StepError(`expecting boolean value for flag --${flag.name}, not: ${shown(flag.value)}`);
      }
    } else if (flag.bare) {
      throw new StepError(`missing a value on flag: --${flag.name}`, `write --${flag.name}=VALUE`);
    }
    values[flag.name] = flag.value;
  }
  return values;
}
