/**
 * Running a tool inside the store's user namespace (issue 15). A tool whose
 * ToolDefinition says `userNamespace` (it mounts, chowns, runs runc or removes
 * files owned by subordinate ids) and whose caller is not root is run again by
 * runCli inside the keeper (rootless/keeper):
 *
 *   nsenter --user --mount --target <keeper pid> --wd=<cwd> -- <node> <execArgv> <script> <args>
 *
 * nsenter becomes uid/gid 0 inside, which is the user (with a single mapping,
 * where setgroups is denied, by --preserve-credentials: the user's ids are
 * 0 there). The child gets our stdio (we never read stdin), our environment
 * plus CONVEYOR_USERNS=<keeper pid> and CONVEYOR_ROOT=<the store resolved
 * here> (inside, uid 0 would make the default store /var/lib/conveyor).
 *
 * The store's trust check (assertTrustedStore) runs here, outside: inside,
 * real-root-owned parents such as /home show as the overflow uid. Fails with
 * ERR_STORE_UNSAFE or ERR_USERNS_UNAVAILABLE (keeper, or nsenter missing)
 * before the tool runs; after that the tool's own exit code or signal is the
 * result (runCli exits with it). Signal forwarding is the caller's (cli.ts
 * owns the process).
 */
import { userInfo } from 'node:os';
import { ConveyorError } from '../errors.js';
import { assertTrustedStore } from '../store.js';
import { startProcess, type Subprocess } from '../subprocess.js';
import { ensureKeeper } from './keeper.js';
import { userMapping } from './subid.js';

export interface EnterOptions {
  /** The store, absolute, resolved outside. */
  root: string;
  /** The command to run inside: node, its execArgv, the tool's script and arguments. */
  command: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** The caller's uid and gid (outside). */
  uid: number;
  gid: number;
}

export interface EnteredTool {
  child: Subprocess;
  /** The tool's end: its exit code, or the signal that killed it. */
  done: Promise<{ exitCode?: number; signal?: NodeJS.Signals }>;
}

function userName(uid: number): string | undefined {
  try {
    const info = userInfo();
    return info.uid === uid ? info.username : undefined;
  } catch {
    return undefined;
  }
}

/** Runs `command` in the store's user namespace (made when missing), with our stdio. */
export async function enterUserNamespace(options: EnterOptions): Promise<EnteredTool> {
  await assertTrustedStore(options.root);
  const mapping = userMapping({ name: userName(options.uid), uid: options.uid, gid: options.gid }, options.env.PATH);
  const keeper = await ensureKeeper(options.root, { uid: options.uid, mapping, env: options.env });
  // A single mapping denies setgroups(2), which nsenter would call to become 0: keep our ids, which are 0 in there.
  const credentials = keeper.mapping === 'single' ? ['--preserve-credentials'] : [];
  const nsenter = ['--user', '--mount', `--target=${keeper.pid}`, ...credentials, `--wd=${options.cwd}`];
  const child = startProcess('nsenter', [...nsenter, '--', ...options.command], {
    env: { ...options.env, CONVEYOR_USERNS: String(keeper.pid), CONVEYOR_ROOT: options.root },
    stdin: 'inherit',
    stdout: 'inherit',
    stderr: 'inherit',
    buffer: false,
  });
  const done = child.result.then((result) => {
    if (result.code === 'ENOENT') throw new ConveyorError('ERR_USERNS_UNAVAILABLE', 'cannot enter the user namespace: nsenter (util-linux) is not installed');
    if (result.code) throw new ConveyorError('ERR_USERNS_UNAVAILABLE', `cannot enter the user namespace: ${result.shortMessage}`);
    return { exitCode: result.exitCode, signal: result.signal };
  });
  return { child, done };
}
