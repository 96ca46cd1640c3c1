/**
 * How the front end's errors look: `<file>:<line>: <what>` with code
 * ERR_DOCKERFILE_PARSE, and values from the Dockerfile shown short and with
 * control characters escaped, since the Dockerfile may be anyone's.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';

/** Longest piece of a Dockerfile value an error message repeats. */
const SHOWN_CHARS = 100;

export function parseError(file: string, line: number, message: string, hint?: string): ConveyorError {
  return new ConveyorError('ERR_DOCKERFILE_PARSE', `${file}:${line}: ${message}`, {
    hint,
    details: { file, line },
  });
}

/** A value as an error shows it: at most 100 characters, control characters escaped. */
export function shown(value: string): string {
  const short = value.length > SHOWN_CHARS ? `${value.slice(0, SHOWN_CHARS)}…` : value;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping control characters is the point
  return short.replace(/[\u0000-\u001f\u007f]/g, (ch) => JSON.stringify(ch).slice(1, -1));
}

/** shown() in double quotes. */
export function quoted(value: string): string {
  return `"${shown(value)}"`;
}
