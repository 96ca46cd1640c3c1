import { join } from 'node:path';
import { homedir } from 'node:os';

/** `/var/lib/conveyor` for root, `$XDG_DATA_HOME/conveyor` (or ~/.local/share/conveyor) otherwise. */
export function defaultStoreRoot(env: NodeJS.ProcessEnv, uid: number): string {
  if (uid === 0) return '/var/lib/conveyor';
  const dataHome = env.XDG_DATA_HOME?.startsWith('/') ? env.XDG_DATA_HOME : join(env.HOME || homedir(), '.local', 'share');
  return join(dataHome, 'conveyor');
}
