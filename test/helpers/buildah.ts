/**
 * Debian's buildah (1.28) as the independent peer of img-build, run
 * hermetically: its own --root/--runroot under a temp dir, so it never sees
 * or changes the host's container storage; and tools to compare what two
 * builders produced: treeOf (every path of an unpacked rootfs with what
 * matters about it) and compareTrees (readable differences).
 *
 *   const buildah = await startBuildah();
 *   const built = await buildah.bud(contextDir, { tags: ['out'], file: 'Dockerfile' });
 *   await buildah.exportImage('out', layoutDir, 'out');       // buildah push IMAGE oci:DIR:TAG
 *   await unpackImage(`${layoutDir}:out`, rootfsDir);           // umoci raw unpack
 *   compareTrees(treeOf(ours), treeOf(theirs));                 // [] when the same
 *   await buildah.cleanup();
 *
 * The working invocation on these machines (found by trying; see bud()):
 *   buildah --root R --runroot RR --storage-driver overlay bud --runtime runc \
 *     --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --tls-verify=false \
 *     --network none --layers [--timestamp N] -t NAME -f Dockerfile CONTEXT
 */
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Why buildah cannot run here, or undefined when it can (tests skip with this reason). */
export function buildahMissing(): string | undefined {
  for (const tool of ['buildah', 'umoci', 'runc']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is not installed`;
    }
  }
  if (process.getuid?.() !== 0) return 'buildah bud with runc needs root here';
  return undefined;
}

export interface BudOptions {
  /** -f, relative to the context or absolute. */
  file?: string;
  /** -t names (buildah puts unqualified ones under localhost/). */
  tags?: string[];
  buildArgs?: Record<string, string>;
  target?: string;
  noCache?: boolean;
  /** --timestamp: created times and file mtimes clamped, for reproducible digests. */
  timestamp?: number;
  /** Extra flags for bud. */
  args?: string[];
}

export interface BudResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The image ID buildah printed last (hex), when the build succeeded. */
  imageID?: string;
}

export interface Buildah {
  /** The temp dir holding its root and runroot. */
  dir: string;
  /** `buildah --root … --runroot … --storage-driver …` and the arguments. */
  command(args: string[]): string[];
  bud(context: string, options?: BudOptions): Promise<BudResult>;
  /** `buildah push IMAGE oci:LAYOUT:TAG`: the image as an OCI layout umoci and skopeo read. */
  exportImage(image: string, layout: string, tag: string): Promise<void>;
  /** Removes every image and container, unmounts what it left, removes the temp dir. */
  cleanup(): Promise<void>;
}

/**
 * The flags buildah bud needs on these machines:
 * - `--runtime runc`: crun 1.8 refuses the hybrid cgroup layout here.
 * - the two `--ulimit`s: buildah asks for rlimits above the hard nofile 20000,
 *   and CAP_SYS_RESOURCE is missing, so its default setrlimit fails.
 * - `--network none`: its default `private` network works here too, but
 *   through CNI's built-in default network: it creates a cni-podman0 bridge
 *   and iptables rules on the host, and gives RUN an eth0. `none` touches no
 *   host network and gives a namespace with only lo, as img-build's RUN gets
 *   from ctr-spawn by default. `--network host` also works, for a Dockerfile
 *   that must reach the loopback registry.
 * - `--tls-verify=false`: FROM pulls from the plain-HTTP loopback test registry.
 * - overlay storage: it works here (root, ext4 /tmp) and is what buildah uses
 *   by default where it can; vfs copies every layer for every step.
 */
export const BUD_FLAGS = ['--runtime', 'runc', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096', '--tls-verify=false', '--network', 'none'];

export async function startBuildah(options: { driver?: 'overlay' | 'vfs'; dir?: string } = {}): Promise<Buildah> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'conveyor-buildah-'));
  const global = ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--storage-driver', options.driver ?? 'overlay'];
  const command = (args: string[]) => ['buildah', ...global, ...args];
  const run = async (args: string[]) => execFileAsync('buildah', [...global, ...args], { maxBuffer: 1 << 28 });
  return {
    dir,
    command,
    async bud(context, budOptions = {}) {
      const args = ['bud', ...BUD_FLAGS, '--layers'];
      if (budOptions.file) args.push('-f', budOptions.file);
      for (const tag of budOptions.tags ?? []) args.push('-t', tag);
      for (const [key, value] of Object.entries(budOptions.buildArgs ?? {})) args.push('--build-arg', `${key}=${value}`);
      if (budOptions.target) args.push('--target', budOptions.target);
      if (budOptions.noCache) args.push('--no-cache');
      if (budOptions.timestamp !== undefined) args.push('--timestamp', String(budOptions.timestamp));
      args.push(...(budOptions.args ?? []), context);
      try {
        const { stdout, stderr } = await run(args);
        const imageID = /([a-f0-9]{64})\s*$/.exec(stdout)?.[1];
        return { code: 0, stdout, stderr, imageID };
      } catch (error) {
        const failed = error as { code?: number; stdout?: string; stderr?: string };
        return { code: typeof failed.code === 'number' ? failed.code : 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? String(error) };
      }
    },
    async exportImage(image, layout, tag) {
      await run(['push', '--quiet', image, `oci:${layout}:${tag}`]);
    },
    async cleanup() {
      await run(['rm', '--all']).catch(() => undefined);
      await run(['rmi', '--all', '--force']).catch(() => undefined);
      // overlay storage mounts its own root (and layer merges) below dir; unmount deepest first.
      const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map((line) => line.split(' ')[4])
        .filter((point): point is string => point?.startsWith(`${dir}/`) === true)
        .sort((a, b) => b.length - a.length);
      for (const point of mounts) {
        try {
          execFileSync('umount', ['-l', point], { stdio: 'ignore' });
        } catch {
          // already gone
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `umoci raw unpack --image LAYOUT:TAG ROOTFS`: an independent unpacker for either builder's image. */
export async function unpackImage(layoutAndTag: string, rootfs: string): Promise<void> {
  await execFileAsync('umoci', ['raw', 'unpack', '--image', layoutAndTag, rootfs], { maxBuffer: 1 << 26 });
}

/** The OCI image config of `tag` in an OCI layout (a manifest entry, or the first manifest of an index entry). */
export function layoutConfig(layout: string, tag: string): Record<string, any> {
  const blob = (digest: string) => JSON.parse(readFileSync(join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8'));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const entry = index.manifests.find((m: any) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
  if (!entry) throw new Error(`no ${tag} in ${layout}/index.json`);
  let manifest = blob(entry.digest);
  if (Array.isArray(manifest.manifests)) manifest = blob(manifest.manifests[0].digest);
  return blob(manifest.config.digest);
}

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';
  /** Permission bits with setuid, setgid and sticky (mode & 0o7777), octal. */
  mode: string;
  uid: number;
  gid: number;
  /** Regular files. */
  size?: number;
  sha256?: string;
  /** Symlinks. */
  target?: string;
  /** Regular files with more than one link: the first path (in sorted order) of the same inode. */
  hardlink?: string;
  /** Selected extended attributes (user.*, security.capability), hex values. */
  xattrs?: Record<string, string>;
}

/** Extended attributes compared: what an image carries on purpose (trusted.* are never unpacked). */
const XATTR_PATTERN = '^(user\\.|security\\.capability$)';

/** The selected xattrs of every path under root, by image path (`/a/b`), read with one getfattr walk. */
function xattrsOf(root: string): Map<string, Record<string, string>> {
  const found = new Map<string, Record<string, string>>();
  let text = '';
  try {
    text = execFileSync('getfattr', ['-R', '-P', '--absolute-names', '-d', '-e', 'hex', '-m', XATTR_PATTERN, root], {
      encoding: 'utf8',
      maxBuffer: 1 << 28,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
  } catch (error) {
    // getfattr exits 1 when some file has none of them; its stdout still lists the rest.
    text = (error as { stdout?: string }).stdout ?? '';
  }
  let current: string | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      const path = line.slice('# file: '.length);
      current = path === root ? '/' : path.slice(root.length);
    } else if (current !== undefined && line.includes('=')) {
      const at = line.indexOf('=');
      const values = found.get(current) ?? {};
      values[line.slice(0, at)] = line.slice(at + 1);
      found.set(current, values);
    }
  }
  return found;
}

/** Every path under `root` (an unpacked rootfs), keyed by its image path (`/`, `/etc/passwd`, ...). */
export function treeOf(root: string): Map<string, TreeEntry> {
  const tree = new Map<string, TreeEntry>();
  const inodes = new Map<string, string>();
  const xattrs = xattrsOf(root);
  const walk = (path: string, name: string) => {
    const info = lstatSync(path, { bigint: true });
    const kind = info.isFile()
      ? 'file'
      : info.isDirectory()
        ? 'dir'
        : info.isSymbolicLink()
          ? 'symlink'
          : info.isFIFO()
            ? 'fifo'
            : info.isCharacterDevice()
              ? 'char'
              : info.isBlockDevice()
                ? 'block'
                : 'socket';
    const entry: TreeEntry = { type: kind, mode: (Number(info.mode) & 0o7777).toString(8).padStart(4, '0'), uid: Number(info.uid), gid: Number(info.gid) };
    if (kind === 'file') {
      entry.size = Number(info.size);
      entry.sha256 = createHash('sha256').update(readFileSync(path)).digest('hex');
      if (info.nlink > 1n) {
        const key = `${info.dev}:${info.ino}`;
        const first = inodes.get(key);
        if (first === undefined) inodes.set(key, name);
        else entry.hardlink = first;
      }
    }
    if (kind === 'symlink') entry.target = readlinkSync(path);
    if (xattrs.has(name)) entry.xattrs = xattrs.get(name);
    tree.set(name, entry);
    // Sorted, so the first path of a hard-linked inode is the same on both sides.
    if (kind === 'dir') for (const child of readdirSync(path).sort()) walk(join(path, child), name === '/' ? `/${child}` : `${name}/${child}`);
  };
  walk(root, '/');
  return tree;
}

/**
 * Paths that legitimately differ between two builders: the files a runtime
 * bind-mounts over and leaves as empty placeholders in a RUN layer
 * (buildah: /etc/hostname, /etc/hosts, /etc/resolv.conf, and /run for its
 * /run/.containerenv and secrets), and nothing else.
 */
export const RUNTIME_PLACEHOLDERS = ['/etc/hostname', '/etc/hosts', '/etc/resolv.conf', '/run'];

export interface CompareOptions {
  /** Image paths (and everything below them) left out of the comparison; RUNTIME_PLACEHOLDERS when absent. */
  ignore?: string[];
}

/** Readable differences between two trees (`[]` when they are the same); `a` and `b` name the sides in messages. */
export function compareTrees(a: Map<string, TreeEntry>, b: Map<string, TreeEntry>, options: CompareOptions = {}, names = ['ours', 'theirs']): string[] {
  const ignore = options.ignore ?? RUNTIME_PLACEHOLDERS;
  const ignored = (path: string) => ignore.some((p) => path === p || path.startsWith(`${p}/`));
  const differences: string[] = [];
  const paths = [...new Set([...a.keys(), ...b.keys()])].filter((p) => !ignored(p)).sort();
  for (const path of paths) {
    const left = a.get(path);
    const right = b.get(path);
    if (!left || !right) {
      differences.push(`${path}: only in ${left ? names[0] : names[1]} (${(left ?? right)!.type})`);
      continue;
    }
    for (const field of ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'target', 'hardlink'] as const) {
      if (left[field] !== right[field]) differences.push(`${path}: ${field} ${names[0]} ${left[field]} vs ${names[1]} ${right[field]}`);
    }
    const lx = JSON.stringify(Object.entries(left.xattrs ?? {}).sort());
    const rx = JSON.stringify(Object.entries(right.xattrs ?? {}).sort());
    if (lx !== rx) differences.push(`${path}: xattrs ${names[0]} ${lx} vs ${names[1]} ${rx}`);
  }
  return differences;
}

/** The config fields both builders must agree on, picked from an OCI image config. */
export function comparableConfig(config: Record<string, any>): Record<string, unknown> {
  const c = config.config ?? {};
  return {
    Env: c.Env ?? [],
    Cmd: c.Cmd ?? null,
    Entrypoint: c.Entrypoint ?? null,
    WorkingDir: c.WorkingDir ?? '',
    User: c.User ?? '',
    Labels: c.Labels ?? {},
    ExposedPorts: c.ExposedPorts ?? {},
    Volumes: c.Volumes ?? {},
    StopSignal: c.StopSignal ?? '',
  };
}
