/** Runs the built img-fetch binary and collects its records and messages. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../../../test/helpers/fixtures.js';

export const BIN = join(REPO_ROOT, 'tools', 'img-fetch', 'bin', 'img-fetch.js');

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  records: Record<string, any>[];
  /** Parsed stderr lines that are JSON (with --log-format=json / --progress=json). */
  logs: Record<string, any>[];
}

export function runFetch(args: string[], options: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DOCKER_CONFIG: '/nonexistent-docker-config', ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const parse = (text: string) =>
        text
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l));
      resolve({ code, stdout, stderr, records: parse(stdout), logs: parse(stderr) });
    });
    child.stdin.end(options.input ?? '');
  });
}
