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
