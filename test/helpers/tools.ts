/**
 * The one way tests run our built tools (tools/<name>/bin/<name>.js): under this node, with stdin
 * from `input`, stdout and stderr collected and their JSON lines parsed. A non-zero exit is a
 * result, never an error. Other programs (skopeo, umoci, runc, mount...) are run directly.
 *
 * Environment: `env` is the child's whole environment. Without it the child inherits ours; a test
 * that wants a clean one passes it in full (img-fetch's `runFetch` passes PATH, HOME and a
 * DOCKER_CONFIG that does not exist), a test that adds to ours spreads `process.env` itself.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './fixtures.js';

export interface ToolOptions {
  /** Written to the tool's stdin, which is then closed (empty when absent). */
  input?: string | Buffer;
  /** The child's whole environment; inherits ours when absent. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the tool (SIGKILL) after this long; the result then has `signal` set. */
  timeoutMs?: number;
}

export interface AsyncToolOptions extends ToolOptions {
  /** Sees all stdout so far each time more arrives, with the child (to signal it or write to it). */
  onStdout?: (stdout: string, child: ChildProcess) => void;
}

export interface ToolResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout without its `error` records (a failing tool's report for the tools downstream: `errors`). */
  stdout: string;
  /** stdout as the tool wrote it. */
  rawStdout: string;
  stderr: string;
  /** The lines of stdout that parse as JSON objects, but `error` records. */
  records: Record<string, any>[];
  /** The `error` records on stdout (docs/protocol.md: failures travel down the pipe). */
  errors: Record<string, any>[];
  /** The lines of stderr that parse as JSON objects (--log-format=json, --progress=json). */
  logs: Record<string, any>[];
}

/** The built bin of tool `name`: tools/<name>/bin/<name>.js. */
export function toolPath(name: string): string {
  return join(REPO_ROOT, 'tools', name, 'bin', `${name}.js`);
}

/** The lines of `text` that parse as JSON objects. */
export function jsonLines(text: string): Record<string, any>[] {
  const out: Record<string, any>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const value = JSON.parse(line);
      if (value && typeof value === 'object' && !Array.isArray(value)) out.push(value);
    } catch {
      // not a record
    }
  }
  return out;
}

/** Whether a stdout line is an `error` record. */
function isErrorLine(line: string): boolean {
  return line.startsWith('{"type":"error",') && jsonLines(line).length === 1;
}

/** A tool's exit and output as tests read them. */
export function toolResult(code: number | null, signal: NodeJS.Signals | null, rawStdout: string, stderr: string): ToolResult {
  // Tests of what a tool printed mean its data; the error record a failure adds is checked through `errors`.
  const stdout = rawStdout
    .split(/(?<=\n)/)
    .filter((line) => !isErrorLine(line))
    .join('');
  const errors = rawStdout.split('\n').filter(isErrorLine).flatMap(jsonLines);
  return { code, signal, stdout, rawStdout, stderr, records: jsonLines(stdout), errors, logs: jsonLines(stderr) };
}

export interface Collected {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Feeds a spawned child `input`, collects its output, and resolves when it
 * has exited and its output is closed (SIGKILLed after `timeoutMs`).
 */
export function collectChild(
  child: ChildProcess,
  options: { input?: string; timeoutMs?: number; onStdout?: (stdout: string, child: ChildProcess) => void } = {},
): Promise<Collected> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      options.onStdout?.(stdout, child);
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // The child may exit before reading all of stdin; that is its business, not an error here.
    child.stdin?.on('error', () => {});
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin?.end(options.input ?? '');
  });
}

/** Runs tool `name` with `args`; resolves when it has exited and its output is closed. */
export async function runTool(name: string, args: string[], options: AsyncToolOptions = {}): Promise<ToolResult> {
  const child = spawn(process.execPath, ['--', toolPath(name), ...args], {
    env: options.env ?? process.env,
    cwd: options.cwd,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const run = await collectChild(child, options);
  return toolResult(run.code, run.signal, run.stdout, run.stderr);
}

/** runTool for synchronous callers (sync test bodies, helpers used at module load). */
export function runToolSync(name: string, args: string[], options: ToolOptions = {}): ToolResult {
  const run = spawnSync(process.execPath, ['--', toolPath(name), ...args], {
    env: options.env ?? process.env,
    cwd: options.cwd,
    input: options.input ?? '',
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    timeout: options.timeoutMs,
    killSignal: 'SIGKILL',
  });
  if (run.error && run.status === null && run.signal === null) throw run.error;
  return toolResult(run.status, run.signal, run.stdout, run.stderr);
}
