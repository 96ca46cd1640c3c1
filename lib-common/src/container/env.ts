/**
 * Container environment variables as `KEY=VAL` lists: `-e KEY[=VAL]` (KEY
 * alone takes the value from the caller's environment, and is dropped when
 * unset there, as Docker does), `--env-file` lines, and merging lists where a
 * later entry wins. Shared by ctr-spawn and ctr-exec.
 *
 * Failure: ERR_USAGE for an invalid variable name or an unreadable env file.
 */
import { readFile } from 'node:fs/promises';
import { ConveyorError } from '../errors.js';

const ENV_KEY = /^[^=\s][^=]*$/;

/** `KEY=VAL` entries kept, `KEY` entries filled in from `hostEnv` (or dropped when it has none). */
export function resolveEnvEntries(entries: string[], hostEnv: Record<string, string | undefined>, where = '--env'): string[] {
  const out: string[] = [];
  for (const entry of entries) {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    if (!ENV_KEY.test(key)) throw new ConveyorError('ERR_USAGE', `${where}: invalid variable name in ${JSON.stringify(entry)}`);
    if (eq >= 0) out.push(entry);
    else if (hostEnv[key] !== undefined) out.push(`${key}=${hostEnv[key]}`);
  }
  return out;
}

/** Reads an env file: KEY=VAL or KEY per line, `#` comments and blank lines ignored. */
export async function readEnvFile(path: string, hostEnv: Record<string, string | undefined>): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConveyorError('ERR_USAGE', `--env-file ${path}: ${(error as Error).message}`);
  }
  const lines = text
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
  return resolveEnvEntries(
    lines.map((l) => l.replace(/^\s+/, '')),
    hostEnv,
    `--env-file ${path}`,
  );
}

/** Later entries win; the order of first appearance is kept. */
export function mergeEnv(...lists: string[][]): string[] {
  const map = new Map<string, string>();
  for (const list of lists) {
    for (const entry of list) {
      const eq = entry.indexOf('=');
      const key = eq < 0 ? entry : entry.slice(0, eq);
      map.set(key, entry);
    }
  }
  return [...map.values()];
}

/** The value of `key` in an env list, or undefined. */
export function envValue(env: string[], key: string): string | undefined {
  const entry = env.find((e) => e.startsWith(`${key}=`));
  return entry === undefined ? undefined : entry.slice(key.length + 1);
}
