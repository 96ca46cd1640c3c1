/**
 * Unprivileged users for the rootless tests (issue 15), made by the test setup, as root:
 *
 * - `conveyor-rl-sub`: a home, and the subordinate ranges SUB_RANGE in /etc/subuid and /etc/subgid
 *   (so newuidmap/newgidmap map 300000..365535 → 1..65536 in its user namespace);
 * - `conveyor-rl-nosub`: a home and no subordinate ranges (a single uid mapping).
 *
 * `rootlessUser(name)` creates them when missing with rootless-users.sh (test/run.sh runs it
 * before the suite): idempotent, and safe when test files run in parallel (flock). useradd gives a
 * new user ranges of its own (login.defs SUB_UID_COUNT); they are replaced by ours, and removed
 * for nosub.
 *
 * `runAs(user, file, args, {env, input, cwd})` runs a program as the user through setpriv
 * (--reuid --regid --init-groups: no capability survives the exec) with a clean environment
 * (HOME, USER, LOGNAME, PATH; no XDG_RUNTIME_DIR), plus `env`. `runToolAs(user, tool, args)` runs a
 * built tool that way and parses its output as tools.ts's runTool does.
 *
 * The users must reach the checkout (tools, node_modules). When every directory above it is
 * searchable by others they use it where it is; otherwise (a CI clone under /root, 0700) each runAs
 * starts in a private mount namespace where the checkout is bind-mounted read-only at
 * CHECKOUT_MOUNT, and `userToolPath`/`userCheckout` give paths there. Nothing global is mounted, so
 * nothing is left to clean up. CONVEYOR_RL_BIND=1 forces the bind (the helper's own test).
 *
 * Stores: `userStore(user, t)` makes a fresh directory in the user's home, owned by the user, and
 * returns `<dir>/store` (not created: the tools create it); t.teardown removes it with
 * `removeUserStore`, which first kills the store's user-namespace keeper (`<store>/run/userns.json`)
 * then deletes everything as root, files owned by subordinate ids included. `ownedByRoot(dir)` lists
 * the paths under dir owned by uid 0 or gid 0 (a rootless run must leave none).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from './fixtures.js';
import { type Collected, collectChild, type ToolResult, toolResult } from './tools.js';

export const SUB_USER = 'conveyor-rl-sub';
export const NOSUB_USER = 'conveyor-rl-nosub';
/** The subordinate uid and gid range of SUB_USER: host ids start..start+count-1. */
export const SUB_RANGE = { start: 300000, count: 65536 } as const;
/** Where the checkout is bind-mounted (in a runAs's private mount namespace) when users cannot reach it. */
export const CHECKOUT_MOUNT = '/run/conveyor-rl-checkout';
const CLEAN_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface RootlessUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  /** The subordinate range (same for uids and gids), absent for NOSUB_USER. */
  range?: { start: number; count: number };
}

const users = new Map<string, RootlessUser>();

/** The test user `name` (SUB_USER or NOSUB_USER), created with the other when missing. */
export function rootlessUser(name: typeof SUB_USER | typeof NOSUB_USER): RootlessUser {
  const known = users.get(name);
  if (known) return known;
  // The script holds the names and the range (SUB_USER, NOSUB_USER, SUB_RANGE): one source for run.sh and us.
  execFileSync('sh', [join(REPO_ROOT, 'test', 'helpers', 'rootless-users.sh')], { stdio: ['ignore', 'ignore', 'pipe'] });
  for (const user of [SUB_USER, NOSUB_USER]) {
    const entry = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((line) => line.startsWith(`${user}:`));
    if (!entry) throw new Error(`test user ${user} was not created`);
    const [, , uid, gid, , home] = entry.split(':');
    users.set(user, { name: user, uid: Number(uid), gid: Number(gid), home, ...(user === SUB_USER ? { range: { ...SUB_RANGE } } : {}) });
  }
  return users.get(name) as RootlessUser;
}

/** Whether other users can reach `dir` (every directory from / down to it searchable by others). */
function reachableByOthers(dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === '/') return true;
  }
}

let unreachable: boolean | undefined;
/** Whether runAs must bind-mount the checkout for the users to reach it (CONVEYOR_RL_BIND=1: always). */
export function checkoutNeedsBind(): boolean {
  unreachable ??= !reachableByOthers(REPO_ROOT);
  return unreachable || process.env.CONVEYOR_RL_BIND === '1';
}

/** The checkout as the test users see it (CHECKOUT_MOUNT when it is bind-mounted for them). */
export function userCheckout(): string {
  return checkoutNeedsBind() ? CHECKOUT_MOUNT : REPO_ROOT;
}

/** The built bin of tool `name` as the test users reach it. */
export function userToolPath(name: string): string {
  return join(userCheckout(), 'tools', name, 'bin', `${name}.js`);
}

export interface RunAsOptions {
  /** Added to the clean environment (HOME, USER, LOGNAME, PATH); a value of undefined removes a variable. */
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. */
  input?: string | Buffer;
  /** Default: the user's home. */
  cwd?: string;
  /** SIGKILL after this long; the result then has `signal` set. */
  timeoutMs?: number;
  /** Sees all stdout so far each time more arrives, with the child. */
  onStdout?: (stdout: string, child: ChildProcess) => void;
}

/** The environment a runAs child gets: a login-like minimum, plus `extra`. */
export function userEnv(user: RootlessUser, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { HOME: user.home, USER: user.name, LOGNAME: user.name, PATH: CLEAN_PATH, LANG: 'C.UTF-8' };
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

/** `name` found on our PATH (the user's, which a test may empty, must not decide which setpriv runs). */
const programs = new Map<string, string>();
function ourProgram(name: string): string {
  let path = programs.get(name);
  if (!path) {
    path = execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim();
    programs.set(name, path);
  }
  return path;
}

/** The command line that runs `file args` as `user` (setpriv; in a namespace with the checkout bound when needed). */
function commandAs(user: RootlessUser, file: string, args: string[]): [string, string[]] {
  const setpriv = ['--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', '--', file, ...args];
  if (!checkoutNeedsBind()) return [ourProgram('setpriv'), setpriv];
  mkdirSync(CHECKOUT_MOUNT, { recursive: true, mode: 0o755 });
  const script = 'mount --bind -o ro "$0" "$1" && shift && exec setpriv "$@"';
  const bound = script.replace('exec setpriv', `exec ${ourProgram('setpriv')}`).replace('mount --bind', `${ourProgram('mount')} --bind`);
  return [ourProgram('unshare'), ['--mount', '--propagation', 'private', '--', ourProgram('sh'), '-c', bound, REPO_ROOT, CHECKOUT_MOUNT, ...setpriv]];
}

export type RunResult = Collected;

/** Runs `file args` as `user`; resolves when it has exited and its output is closed (a non-zero exit is a result). */
export function runAs(user: RootlessUser, file: string, args: string[], options: RunAsOptions = {}): Promise<RunResult> {
  const [command, argv] = commandAs(user, file, args);
  const child = spawn(command, argv, { env: userEnv(user, options.env), cwd: options.cwd ?? user.home, stdio: ['pipe', 'pipe', 'pipe'] });
  return collectChild(child, options);
}

/** Runs built tool `name` as `user` (under this node), with its output parsed as runTool's. */
export async function runToolAs(user: RootlessUser, name: string, args: string[], options: RunAsOptions = {}): Promise<ToolResult> {
  const run = await runAs(user, process.execPath, ['--', userToolPath(name), ...args], options);
  return toolResult(run.code, run.signal, run.stdout, run.stderr);
}

/** The paths under `dir` (itself included) owned by uid 0 or gid 0, as `path uid:gid`. */
export function ownedByRoot(dir: string): string[] {
  const found: string[] = [];
  const walk = (path: string) => {
    const info = lstatSync(path);
    if (info.uid === 0 || info.gid === 0) found.push(`${path} ${info.uid}:${info.gid}`);
    if (info.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  if (existsSync(dir)) walk(dir);
  return found;
}

/** Ends the user-namespace keeper recorded in `<store>/run/userns.json` when it still is that process. */
export function killKeeper(store: string): void {
  let keeper: { pid?: unknown; startTime?: unknown };
  try {
    keeper = JSON.parse(readFileSync(join(store, 'run', 'userns.json'), 'utf8'));
  } catch {
    return;
  }
  if (typeof keeper.pid !== 'number' || !Number.isInteger(keeper.pid) || keeper.pid <= 1) return;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${keeper.pid}/stat`, 'utf8');
  } catch {
    return;
  }
  // Field 22 (start time) after the parenthesised comm, which may hold spaces.
  const started = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  if (keeper.startTime !== undefined && String(keeper.startTime) !== started) return;
  try {
    process.kill(keeper.pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/** Removes a test store (and the directory userStore made for it) as root, whoever owns its files. */
export function removeUserStore(store: string): void {
  // The store, and any other store a test made beside it (an XDG default under <dir>/xdg/conveyor).
  const stores = (dir: string, depth: number): string[] => {
    if (existsSync(join(dir, 'run', 'userns.json'))) return [dir];
    if (depth === 0) return [];
    try {
      return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? stores(join(dir, e.name), depth - 1) : []));
    } catch {
      return [];
    }
  };
  for (const found of stores(dirname(store), 3)) killKeeper(found);
  // Mounts the tests left in our namespace (the keeper's own die with it): lazily, deepest first.
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point) => point && (point === store || point.startsWith(`${dirname(store)}/`)))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) {
    try {
      execFileSync('umount', ['-l', point], { stdio: 'ignore' });
    } catch {
      // not mounted any more
    }
  }
  rmSync(dirname(store), { recursive: true, force: true });
}

/**
 * A fresh store path for `user`: `<home>/conveyor-test-XXXX/store`, the directory owned by the
 * user (0700), the store itself not created. With `t`, removed at its teardown.
 */
export function userStore(user: RootlessUser, t?: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(user.home, 'conveyor-test-'));
  chownSync(dir, user.uid, user.gid);
  chmodSync(dir, 0o700);
  const store = join(dir, 'store');
  t?.teardown(() => removeUserStore(store));
  return store;
}
