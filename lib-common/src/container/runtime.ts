/**
 * Calls to the OCI runtime (runc, crun): `run` in the foreground or with
 * --detach, `state`, `kill`, `delete`, each with `--root <runtime root>`, and
 * reading why it failed from its JSON log (`--log`).
 *
 * Failure: runtimeRun throws ERR_RUNTIME_NOT_FOUND when the runtime binary
 * is missing and ERR_SPAWN_FAILED when it cannot be started; otherwise it
 * resolves to the runtime's exit code, which in the foreground is the
 * container's. runtimeFailure maps the runtime's own error text to Docker's
 * codes (127 not found, 126 not executable, ERR_CGROUP). state, kill and
 * delete never throw: they are best-effort.
 *
 * Rootless (docs/rootless.md): a container made inside a user's namespace
 * keeper belongs to that user namespace, and only a process inside it (or
 * the user outside, its owner, for signals) may act on it. With
 * `userNamespaceOf`, the runtime runs inside the user namespace of that
 * process (`nsenter --user --preserve-credentials`: the user's uid is 0
 * there, with every capability over the namespace; without
 * --preserve-credentials nsenter's setgroups fails under a single mapping,
 * where setgroups is denied). Giving the container's own pid works even when
 * the keeper that made it is gone.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { constants as osConstants } from 'node:os';
import { ConveyorError } from '../errors.js';
import { runProcess, type StdioSlot, type Subprocess } from '../subprocess.js';

/**
 * The container's init as runc's own state file (`<runtime root>/<id>/state.json`) records it: its pid
 * and start time (clock ticks since boot, /proc/PID/stat's), for a container whose state.json has no
 * pid (a foreground run: ctr-spawn writes its state before the runtime starts it). Undefined when the
 * file is missing or not runc's shape (crun's). The caller checks the pid against the start time.
 */
export async function runtimeInitProcess(runtimeRoot: string, id: string): Promise<{ pid: number; startTime: string } | undefined> {
  try {
    const state = JSON.parse(await readFile(`${runtimeRoot}/${id}/state.json`, 'utf8')) as { init_process_pid?: unknown; init_process_start?: unknown };
    const pid = state.init_process_pid;
    const start = state.init_process_start;
    if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return undefined;
    if (typeof start !== 'number' || !Number.isInteger(start) || start < 0) return undefined;
    return { pid, startTime: String(start) };
  } catch {
    return undefined;
  }
}

export interface Runtime {
  /** The runtime binary (name on PATH or path). */
  runtime: string;
  /** Its state directory (its --root). */
  runtimeRoot: string;
  /** Run the runtime in the user namespace of this process (a rootless container's init): see the header. */
  userNamespaceOf?: number;
}

/** The program and arguments that run the runtime with `args` (inside a user namespace when the runtime says so). */
export function runtimeCommand(rt: Runtime, args: string[]): { file: string; args: string[] } {
  const own = ['--root', rt.runtimeRoot, ...args];
  if (rt.userNamespaceOf === undefined) return { file: rt.runtime, args: own };
  return { file: 'nsenter', args: ['--user', '--preserve-credentials', `--target=${rt.userNamespaceOf}`, '--', rt.runtime, ...own] };
}

export interface RuntimeRunOptions {
  /** The container's stdin, stdout, stderr. */
  stdio: [StdioSlot, StdioSlot, StdioSlot];
  /** Its own session: signals from our terminal do not reach it directly. */
  ownSession: boolean;
  /** Called once the runtime process is running. */
  onStart: (child: Subprocess) => void;
}

/** The arguments that make the runtime log to `logPath` as JSON (none for runtimes we do not know). */
export function runtimeLogArgs(runtime: string, logPath: string): string[] {
  const name = basename(runtime);
  if (name === 'runc') return ['--log', logPath, '--log-format', 'json'];
  if (name === 'crun') return [`--log=file:${logPath}`, '--log-format=json'];
  return [];
}

/** 128 + N for signal N, as shells and Docker report a death by signal. */
export function signalExit(signal: NodeJS.Signals): number {
  return 128 + (osConstants.signals[signal] ?? 0);
}

/** Runs the runtime with `args`; resolves to its exit code (128+N when killed by signal N). */
export async function runtimeRun(rt: Runtime, args: string[], options: RuntimeRunOptions): Promise<number> {
  const command = runtimeCommand(rt, args);
  const result = await runProcess(command.file, command.args, {
    stdin: options.stdio[0],
    stdout: options.stdio[1],
    stderr: options.stdio[2],
    detached: options.ownSession,
    onSpawn: options.onStart,
  });
  if (result.code === 'ENOENT') {
    if (command.file !== rt.runtime) throw new ConveyorError('ERR_RUNTIME_NOT_FOUND', `${command.file} not found`, { hint: 'install util-linux' });
    throw new ConveyorError('ERR_RUNTIME_NOT_FOUND', `OCI runtime ${rt.runtime} not found`, { hint: 'install runc, or choose one with --runtime' });
  }
  if (result.code !== undefined) throw new ConveyorError('ERR_SPAWN_FAILED', `cannot start ${rt.runtime}: ${result.originalMessage}`);
  return result.exitCode ?? (result.signal ? signalExit(result.signal) : 128);
}

/** The pid of a running container's process, from `runtime state`; undefined when unknown. */
export async function runtimeStatePid(rt: Runtime, id: string): Promise<number | undefined> {
  const command = runtimeCommand(rt, ['state', id]);
  const state = await runProcess(command.file, command.args, { stderr: 'ignore' });
  try {
    return (JSON.parse(state.stdout) as { pid?: number }).pid;
  } catch {
    return undefined;
  }
}

/** Sends `signal` (a name without SIG: KILL) to the container. */
export async function runtimeKill(rt: Runtime, id: string, signal: string): Promise<void> {
  const command = runtimeCommand(rt, ['kill', id, signal]);
  await runProcess(command.file, command.args, { stdout: 'ignore', stderr: 'ignore' });
}

/** Removes the runtime's state of the container, killing it if it still runs. */
export async function runtimeDelete(rt: Runtime, id: string): Promise<void> {
  const command = runtimeCommand(rt, ['delete', '--force', id]);
  await runProcess(command.file, command.args, { stdout: 'ignore', stderr: 'ignore' });
}

/** The error messages of the runtime's JSON log, oldest first ([] when there is none). */
export async function runtimeErrors(logPath: string): Promise<string[]> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  const errors: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === 'error' || entry.level === 'fatal') && entry.msg) errors.push(entry.msg);
    } catch {
      // not JSON: a runtime that ignores --log-format
    }
  }
  return errors;
}

/** Turns the runtime's own failure text into Docker's exit codes. */
export function runtimeFailure(message: string): ConveyorError {
  const text = message.replace(/^runc run failed: /, '');
  if (/exec: .*(executable file not found|no such file or directory)/i.test(text)) {
    return new ConveyorError('ERR_SPAWN_COMMAND_NOT_FOUND', text, { hint: 'check the command and the image' });
  }
  if (/exec: .*(permission denied|is a directory|exec format error)/i.test(text)) {
    return new ConveyorError('ERR_SPAWN_NOT_EXECUTABLE', text, { hint: 'the command must be an executable file' });
  }
  // The root overlay the runtime mounts itself (ctr-spawn's spec: its first mount, on /).
  if (/error mounting "overlay" to rootfs at "\/"/.test(text)) {
    return new ConveyorError('ERR_MOUNT_FAILED', text, {
      hint: "check the layer directories; CONVEYOR_OVERLAY_DRIVER=overlay mounts the root here instead, with the kernel's reason",
    });
  }
  if (/cgroup/i.test(text))
    return new ConveyorError('ERR_CGROUP', text, { hint: 'check the limits (--memory, --cpus, --pids-limit) and the cgroup filesystem' });
  return new ConveyorError('ERR_SPAWN_FAILED', text, { hint: 'the OCI runtime refused the container; inspect it with --print-spec' });
}
