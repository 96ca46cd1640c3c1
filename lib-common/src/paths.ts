import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { homedir } from 'node:os';

/**
 * `/var/lib/conveyor` for root, `$XDG_DATA_HOME/conveyor` (or ~/.local/share/conveyor) otherwise.
 * Inside a rootless tool's user namespace (CONVEYOR_USERNS set by rootless/enter) uid 0 is the
 * user, whose store is the XDG one (enter passes it as CONVEYOR_ROOT too).
 */
export function defaultStoreRoot(env: NodeJS.ProcessEnv, uid: number): string {
  if (uid === 0 && !env.CONVEYOR_USERNS) return '/var/lib/conveyor';
  const dataHome = env.XDG_DATA_HOME?.startsWith('/') ? env.XDG_DATA_HOME : join(env.HOME || homedir(), '.local', 'share');
  return join(dataHome, 'conveyor');
}

/**
 * Whether a store has been used through a user namespace (it records a keeper: rootless/keeper),
 * so it may hold files owned by subordinate ids that only that namespace can remove: img-rm and
 * img-prune enter it then (ToolDefinition.userNamespace), and need no namespace otherwise. Here,
 * in a module runCli loads anyway, so a tool's cli.ts can ask at no start-up cost.
 */
export function storeUsesUserNamespace(root: string): boolean {
  return existsSync(join(root, 'run', 'userns.json'));
}
