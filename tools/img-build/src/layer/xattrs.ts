/**
 * xattrs of whole trees in one child process each: Node has no xattr API, and
 * one `getfattr -R` (or `setfattr --restore`) beats a process per file. Paths
 * are relative to the root ('' is the root itself); names and values are byte
 * strings (latin1). Which xattrs an image carries is decided once, here
 * (xattrKept), for the layers we pack and the files COPY writes.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { runProcess } from '@conveyor/lib-common/subprocess';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The xattrs that belong to an image (Docker keeps these): file capabilities and user.*, but overlayfs's own; trusted.* and the rest are the host's. */
export function xattrKept(name: string): boolean {
  return name === 'security.capability' || (name.startsWith('user.') && !name.startsWith('user.overlay.'));
}

/** getfattr/setfattr's escaping: every byte outside a safe set as \\ooo octal. */
function escapeAttrText(text: string, encoding: 'utf8' | 'latin1'): string {
  let out = '';
  for (const byte of Buffer.from(text, encoding)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9/._+,:@%^-]/.test(c) ? c : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/** Sets xattrs (values as byte strings) on absolute paths without following symlinks, in one setfattr. */
export async function writeXattrs(entries: { path: string; xattrs: Map<string, string> }[]): Promise<void> {
  if (entries.length === 0) return;
  let text = '';
  for (const { path, xattrs } of entries) {
    text += `# file: ${escapeAttrText(path, 'utf8')}\n`;
    for (const [name, value] of xattrs) text += `${escapeAttrText(name, 'latin1')}=0s${Buffer.from(value, 'latin1').toString('base64')}\n`;
    text += '\n';
  }
  const result = await runProcess('setfattr', ['-h', '--restore=-'], { input: text, stdout: 'ignore', maxBuffer: 4000 });
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_STORE_IO', `cannot run setfattr: ${result.originalMessage}`, {
      hint: result.code === 'ENOENT' ? "install Debian's attr package" : undefined,
    });
  }
  if (result.failed) throw new ConveyorError('ERR_STORE_IO', `setfattr failed: ${result.stderr.trim() || `exit ${result.exitCode}`}`);
}

/** getfattr's path escaping (`\ooo` for control bytes and backslash) undone, bytes decoded as UTF-8. */
function unescapePath(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x5c && i + 3 < bytes.length + 0 && /^[0-7]{3}$/.test(bytes.toString('latin1', i + 1, i + 4))) {
      out.push(Number.parseInt(bytes.toString('latin1', i + 1, i + 4), 8));
      i += 3;
    } else out.push(bytes[i]);
  }
  return utf8.decode(Buffer.from(out));
}

/** Every xattr of `paths` and everything below them (symlinks not followed), by absolute path. */
export async function readXattrPaths(paths: string[]): Promise<Map<string, Map<string, string>>> {
  const found = new Map<string, Map<string, string>>();
  if (paths.length === 0) return found;
  const result = await runProcess('getfattr', ['--absolute-names', '-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--', ...paths], {
    maxBuffer: 1 << 30,
  });
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_STORE_IO', `cannot run getfattr: ${result.originalMessage}`, {
      hint: result.code === 'ENOENT' ? "install Debian's attr package" : undefined,
    });
  }
  if (result.failed)
    throw new ConveyorError('ERR_STORE_IO', `getfattr ${paths[0]}${paths.length > 1 ? ' …' : ''} failed: ${result.stderr.trim() || `exit ${result.exitCode}`}`);
  let current: Map<string, string> | undefined;
  for (const line of result.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = new Map();
      found.set(unescapePath(line.slice('# file: '.length)), current);
      continue;
    }
    const equals = line.indexOf('=');
    if (!current || equals <= 0) continue;
    const value = line.slice(equals + 1);
    current.set(line.slice(0, equals), value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex').toString('latin1') : '');
  }
  return found;
}

/** Every xattr under `root` (symlinks not followed), by path relative to `root`. */
export async function readXattrTree(root: string): Promise<Map<string, Map<string, string>>> {
  const tree = new Map<string, Map<string, string>>();
  for (const [path, xattrs] of await readXattrPaths([root])) {
    const relative = path === root ? '' : path.startsWith(`${root}/`) ? path.slice(root.length + 1) : undefined;
    if (relative === undefined) throw new ConveyorError('ERR_STORE_IO', `getfattr reported ${path}, outside ${root}`);
    tree.set(relative, xattrs);
  }
  return tree;
}
