/**
 * The keeper: one long-lived tiny process (`sleep infinity`, its own session,
 * stdio closed) per user and store, in a new user namespace and mount
 * namespace with the user's mapping (rootless/subid: uid → 0, plus the
 * subordinate range → 1..N when there is one). Mount propagation is slave:
 * mounts made there stay there, while the host's later mounts (where / is
 * shared, as under systemd) still appear in it. Tools that
 * need privilege join it (rootless/enter: `nsenter --user --mount --target
 * PID`), so the mounts one tool makes there are seen by the next, as podman's
 * pause process. It is recorded in `<store>/run/userns.json` (0600):
 *
 *   { "pid", "startTime" (/proc/<pid>/stat field 22), "uid", "mapping": "range" | "single",
 *     "uidMap", "gidMap" (as /proc/<pid>/uid_map prints them, normalised), "createdAt" }
 *
 * ensureKeeper, under the store lock `locks/userns.lock`: the recorded keeper
 * when it still is that process (same pid and start time, comm `sleep`, owned
 * by the user, in another user namespace, with the mapping this host gives the
 * user now); otherwise a new one (a live keeper with a stale mapping is killed
 * first), recorded atomically. The store directory is created (0700, with
 * parents) when missing. Containers have mount namespaces of their own
 * (cloned by runc), so the keeper's death does not end them; the next tool
 * makes a new keeper.
 *
 * Fails with ERR_USERNS_UNAVAILABLE when unshare is missing, user namespaces
 * are disabled, or newuidmap/newgidmap refuse the range (their message kept).
 * Must run OUTSIDE the namespace (a non-root caller).
 */
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConveyorError } from '../errors.js';
import { processAlive, startTime, withLock } from '../lock.js';
import { runProcess, startProcess } from '../subprocess.js';
import { formatMap, type IdMapping, normaliseMap } from './subid.js';

export interface KeeperRecord {
  pid: number;
  startTime: string;
  uid: number;
  mapping: IdMapping['kind'];
  uidMap: string;
  gidMap: string;
  createdAt: string;
}

export interface KeeperOptions {
  /** The user outside (the caller): its uid; the mapping to give the namespace (subid.userMapping). */
  uid: number;
  mapping: IdMapping;
  /** The environment unshare runs with (PATH finds unshare, newuidmap, sleep). */
  env?: NodeJS.ProcessEnv;
  /** How long a new keeper may take to be ready; default 10 s. */
  timeoutMs?: number;
}

/** Where the store records its keeper. */
export function keeperPath(root: string): string {
  return join(root, 'run', 'userns.json');
}

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Whether `record` still describes a live keeper of `uid` (its maps still the recorded ones). */
export function keeperAlive(record: KeeperRecord, uid: number): boolean {
  if (!Number.isInteger(record.pid) || record.pid <= 1 || typeof record.startTime !== 'string') return false;
  if (!processAlive(record.pid, record.startTime)) return false;
  if (readOr(`/proc/${record.pid}/comm`)?.trim() !== 'sleep') return false;
  // A killed keeper not yet reaped by init still has its /proc entry, but no namespaces to join.
  const stat = readOr(`/proc/${record.pid}/stat`) ?? '';
  if (/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))) return false;
  try {
    if (statSync(`/proc/${record.pid}`).uid !== uid) return false;
    if (readlinkSync(`/proc/${record.pid}/ns/user`) === readlinkSync('/proc/self/ns/user')) return false;
  } catch {
    return false;
  }
  const uidMap = normaliseMap(readOr(`/proc/${record.pid}/uid_map`) ?? '');
  const gidMap = normaliseMap(readOr(`/proc/${record.pid}/gid_map`) ?? '');
  return uidMap === record.uidMap && gidMap === record.gidMap;
}

/** The keeper recorded for the store when it is still alive (and the user's), else undefined. */
export async function findKeeper(root: string, uid: number): Promise<KeeperRecord | undefined> {
  let record: KeeperRecord;
  try {
    record = JSON.parse(await readFile(keeperPath(root), 'utf8'));
  } catch {
    return undefined;
  }
  return record && typeof record === 'object' && keeperAlive(record, uid) ? record : undefined;
}

/** unshare's options for a mapping: podman's layout (the user → 0, the range → 1..N). */
export function unshareArgs(mapping: IdMapping): string[] {
  const args = ['--user', '--mount', '--propagation', 'slave', '--map-root-user'];
  if (mapping.kind === 'range') {
    const [, uids] = mapping.uidMap;
    const [, gids] = mapping.gidMap;
    // util-linux 2.38: outer,inner,count; applied with newuidmap/newgidmap (with --map-root-user's own line).
    args.push(`--map-users=${uids.outside},${uids.inside},${uids.count}`, `--map-groups=${gids.outside},${gids.inside},${gids.count}`);
  }
  return args;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts a keeper and waits until it is `sleep` in its namespace with its maps written. */
async function startKeeper(options: KeeperOptions): Promise<KeeperRecord> {
  const child = startProcess('unshare', [...unshareArgs(options.mapping), '--', 'sleep', 'infinity'], {
    detached: true,
    cwd: '/',
    env: options.env,
    stdin: 'ignore',
    stdout: 'ignore',
    stderr: 'pipe',
  });
  const expected = { uidMap: formatMap(options.mapping.uidMap), gidMap: formatMap(options.mapping.gidMap) };
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let ended = false;
  void child.result.then(() => (ended = true));
  const unavailable = (why: string, hint?: string) =>
    new ConveyorError('ERR_USERNS_UNAVAILABLE', `cannot create the user namespace: ${why}`, {
      hint:
        hint ??
        (options.mapping.kind === 'range'
          ? 'check the user namespace sysctls (user.max_user_namespaces) and that newuidmap/newgidmap accept your /etc/subuid and /etc/subgid ranges'
          : 'check that unprivileged user namespaces are enabled (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)'),
    });
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const pid = child.pid;
    if (ended || pid === undefined) {
      const result = await child.result;
      if (result.code === 'ENOENT')
        throw unavailable('unshare (util-linux) is not installed', 'install util-linux (unshare, nsenter); Debian: apt install util-linux');
      throw unavailable(result.stderr.trim() || result.shortMessage);
    }
    if (readOr(`/proc/${pid}/comm`)?.trim() === 'sleep') {
      const uidMap = normaliseMap(readOr(`/proc/${pid}/uid_map`) ?? '');
      const gidMap = normaliseMap(readOr(`/proc/${pid}/gid_map`) ?? '');
      const started = startTime(pid);
      if (uidMap !== expected.uidMap || gidMap !== expected.gidMap || started === undefined) {
        child.kill('SIGKILL');
        throw unavailable(
          `its maps are ${JSON.stringify(uidMap)} / ${JSON.stringify(gidMap)}, not ${JSON.stringify(expected.uidMap)} / ${JSON.stringify(expected.gidMap)}`,
        );
      }
      // It outlives us: nothing of it may keep us running or write to us.
      child.stderr?.destroy();
      child.unref();
      return { pid, startTime: started, uid: options.uid, mapping: options.mapping.kind, uidMap, gidMap, createdAt: new Date().toISOString() };
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw unavailable('unshare did not start sleep in time');
    }
    await sleep(delay);
  }
}

/** The store's live keeper with the user's mapping, made (and recorded) when there is none. */
export async function ensureKeeper(root: string, options: KeeperOptions): Promise<KeeperRecord> {
  const expected = { uidMap: formatMap(options.mapping.uidMap), gidMap: formatMap(options.mapping.gidMap) };
  const hasExpectedMaps = (record: KeeperRecord | undefined) => record?.uidMap === expected.uidMap && record.gidMap === expected.gidMap;
  const quick = await findKeeper(root, options.uid);
  if (quick && hasExpectedMaps(quick)) return quick;
  await mkdir(join(root, 'run'), { recursive: true, mode: 0o700 });
  return withLock(join(root, 'locks', 'userns.lock'), async () => {
    const current = await findKeeper(root, options.uid);
    if (current && hasExpectedMaps(current)) return current;
    // A keeper with a mapping the host no longer gives (a range added or removed): replaced.
    if (current) await runProcess('kill', ['-KILL', String(current.pid)]);
    const record = await startKeeper(options);
    const path = keeperPath(root);
    const temp = `${path}.${record.pid}.tmp`;
    await writeFile(temp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
    await rename(temp, path);
    return record;
  });
}
