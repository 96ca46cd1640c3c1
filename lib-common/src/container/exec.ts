/**
 * Running one more process in a running container (ctr-exec), as `docker
 * exec` does: `runtime exec --process FILE ID`, where FILE is the process of
 * the container's own config.json (its user, environment, working directory,
 * capabilities, rlimits, noNewPrivileges, AppArmor/SELinux labels; the runtime
 * adds the container's namespaces, cgroup and seccomp filter) with the
 * caller's overrides applied. The process file and the runtime's log are
 * written into the container directory and removed afterwards.
 *
 * Failure: ERR_CONTAINER_NOT_RUNNING when the container is not running (by
 * its state, or as the runtime finds it); ERR_STORE_CORRUPT for a config.json
 * without a process; ERR_USAGE for a relative working directory;
 * ERR_USER_NOT_FOUND, ERR_SPAWN_UNSAFE_WORKDIR (checked in the container's
 * root before anything runs); the runtime's own failure mapped by
 * runtimeFailure (125 / 126 not executable / 127 not found). Otherwise the
 * command's exit code, 128+N when it died of signal N.
 *
 * Rootless (`fromOutside`: an unprivileged user, not in the container's user
 * namespace): the runtime joins that namespace through the container's init
 * (runtime.ts userNamespaceOf), which works whether or not the keeper that
 * made the container still lives, and -u/-w are resolved through
 * /proc/<pid>/root, since the container's overlay is mounted only in the
 * keeper's mount namespace. So are they for a container whose overlay the
 * runtime mounted (ctr-spawn's foreground runs): it is in the container's
 * mount namespace only, its merged dir on the host an empty directory.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { randomHex } from '../digest.js';
import { ConveyorError } from '../errors.js';
import { containerPaths, mountsUnder } from '../overlay/mount.js';
import type { Store } from '../store.js';
import type { StdioSlot, Subprocess } from '../subprocess.js';
import { envValue, mergeEnv } from './env.js';
import { checkWorkdir } from './rootfs.js';
import { runtimeErrors, runtimeFailure, runtimeInitProcess, runtimeLogArgs, runtimeRun, type Runtime } from './runtime.js';
import { type ContainerState, isRunning, processRuns } from './state.js';
import { type ResolvedUser, resolveUser } from './user.js';

/** The OCI spec's `process` object, as far as exec reads or changes it; other keys are carried over verbatim. */
export interface SpecProcess {
  terminal?: boolean;
  user: { uid: number; gid: number; additionalGids?: number[]; [key: string]: unknown };
  args: string[];
  env?: string[];
  cwd: string;
  [key: string]: unknown;
}

export interface ExecOptions {
  /** The command and its arguments. */
  command: string[];
  /** `KEY=VAL` entries (-e, --env-file), added to the container's environment; later wins. */
  env: string[];
  /** -u: a user[:group] resolved in the container's /etc/passwd and /etc/group. */
  user?: string;
  /** -w: an absolute directory in the container. */
  workdir?: string;
  /** -t: a terminal for the process. */
  tty: boolean;
  /** -d: start it and return at once (its output goes nowhere, as with `docker exec -d`). */
  detach: boolean;
  /** The caller is an unprivileged user outside the container's user namespace (rootless): see the header. */
  fromOutside?: boolean;
}

export interface ExecIO {
  /** The process's stdin (an fd, or 'ignore' for /dev/null), stdout and stderr. */
  stdio: [StdioSlot, StdioSlot, StdioSlot];
  /** The runtime reads our terminal: it stays in our session; otherwise it gets its own and signals are forwarded. */
  usesTerminal: boolean;
  /** Called once the runtime process runs (to forward signals to it). */
  onStart: (child: Subprocess) => void;
}

/**
 * The process to exec: the container's `base` process with the command,
 * environment (the container's, then `env`; TERM=xterm with a terminal
 * unless set; HOME of `user` when a user is given and `env` sets none),
 * user and working directory replaced. Pure.
 */
export function execProcess(base: SpecProcess, overrides: { command: string[]; env: string[]; user?: ResolvedUser; cwd?: string; tty: boolean }): SpecProcess {
  const { user } = overrides;
  let env = mergeEnv(base.env ?? [], overrides.tty && !(base.env ?? []).some((e) => e.startsWith('TERM=')) ? ['TERM=xterm'] : [], overrides.env);
  if (user && envValue(overrides.env, 'HOME') === undefined) env = mergeEnv(env, [`HOME=${user.home}`]);
  const { consoleSize: _size, ...rest } = base;
  return {
    ...rest,
    terminal: overrides.tty,
    args: overrides.command,
    env,
    cwd: overrides.cwd ?? base.cwd,
    // The primary group among the supplementary ones, as Docker's exec (and ctr-spawn's run) gives it.
    user: user ? { ...base.user, uid: user.uid, gid: user.gid, additionalGids: [...new Set([user.gid, ...user.additionalGids])] } : base.user,
  };
}

/** The `process` of the container's config.json (its bundle is its directory in the store). */
export async function containerProcess(store: Store, id: string): Promise<SpecProcess> {
  const path = join(store.containerDir(id), 'config.json');
  let spec: { process?: SpecProcess };
  try {
    spec = JSON.parse(await readFile(path, 'utf8')) as { process?: SpecProcess };
  } catch (error) {
    throw new ConveyorError('ERR_STORE_CORRUPT', `${path}: ${(error as Error).message}`, {
      hint: 'the container has no usable runtime spec; remove it with ctr-rm -f',
    });
  }
  const base = spec?.process;
  if (!base || typeof base !== 'object' || !base.user || typeof base.cwd !== 'string') {
    throw new ConveyorError('ERR_STORE_CORRUPT', `${path} has no process to start from`, { hint: 'remove the container with ctr-rm -f' });
  }
  return base;
}

/**
 * Where the container's files are seen from here: its merged dir when the overlay is mounted in our
 * mount namespace, else through its init's root (/proc/PID/root). The pid is state.json's, or (a
 * foreground run's state has none) the runtime's state file's, checked against its start time either
 * way: a recycled pid would be someone else's. The container's id is checked by the caller (state.ts).
 */
export async function containerRoot(store: Store, state: ContainerState, outside = false): Promise<string> {
  const { merged } = containerPaths(store, state.id);
  if (!outside && (await mountsUnder(merged)).includes(merged)) return merged;
  const init = state.pid ? { pid: state.pid, startTime: state.pidStartTime } : await runtimeInitProcess(state.runtimeRoot, state.id);
  if (!(init && processRuns(init.pid, init.startTime))) throw notRunning(state);
  return `/proc/${init.pid}/root`;
}

function notRunning(state: ContainerState): ConveyorError {
  return new ConveyorError('ERR_CONTAINER_NOT_RUNNING', `container ${state.name ?? state.id.slice(0, 12)} is not running`, {
    hint: 'start a new one with ctr-spawn -d',
  });
}

/** The runtime's words for a container it no longer runs (runc: "cannot exec in a stopped container", "container does not exist"). */
const STOPPED = /stopped container|not running|container does not exist/i;

/**
 * Runs `options.command` in the running container `state`. Resolves to the
 * command's exit code (0 once started with `detach`).
 */
export async function execInContainer(store: Store, state: ContainerState, options: ExecOptions, io: ExecIO): Promise<number> {
  if (!isRunning(state)) throw notRunning(state);
  if (options.command.length === 0) throw new ConveyorError('ERR_USAGE', 'no command given', { hint: 'ctr-exec ID COMMAND [ARG...]' });
  const outside = options.fromOutside === true;
  // From outside, the init is the way in: it must be the container's own (a recycled pid would be someone else's).
  if (outside && !(state.pid && processRuns(state.pid, state.pidStartTime))) throw notRunning(state);
  const base = await containerProcess(store, state.id);
  // Names and paths resolve in the container's own tree (hostile input: symlinks stay inside it).
  const rootfs = options.workdir !== undefined || options.user !== undefined ? await containerRoot(store, state, outside) : '';
  let cwd: string | undefined;
  if (options.workdir !== undefined) {
    if (!options.workdir.startsWith('/')) throw new ConveyorError('ERR_USAGE', `working directory must be absolute: ${JSON.stringify(options.workdir)}`);
    cwd = posix.normalize(options.workdir);
    await checkWorkdir(rootfs, cwd);
  }
  const user = options.user === undefined ? undefined : await resolveUser(rootfs, options.user);
  const spec = execProcess(base, { command: options.command, env: options.env, user, cwd, tty: options.tty });

  const rt: Runtime = { runtime: state.runtime, runtimeRoot: state.runtimeRoot, ...(outside ? { userNamespaceOf: state.pid } : {}) };
  const name = `exec-${randomHex(6)}`;
  const processFile = join(store.containerDir(state.id), `${name}.json`);
  const logPath = join(store.containerDir(state.id), `${name}.log`);
  await writeFile(processFile, JSON.stringify(spec), { mode: 0o600 });
  try {
    const args = [...runtimeLogArgs(rt.runtime, logPath), 'exec', '--process', processFile, ...(options.detach ? ['--detach'] : []), state.id];
    const code = await runtimeRun(rt, args, { stdio: io.stdio, ownSession: !io.usesTerminal, onStart: io.onStart });
    // A non-zero code is the command's own unless the runtime logged why it could not run it.
    const errors = code !== 0 ? await runtimeErrors(logPath) : [];
    if (errors.length > 0) {
      const last = errors.at(-1)!;
      if (STOPPED.test(last)) throw notRunning(state);
      throw runtimeFailure(last.replace(/^exec failed: (unable to start container process: )?/, ''));
    }
    return code;
  } finally {
    await Promise.all([rm(processFile, { force: true }), rm(logPath, { force: true })]);
  }
}
