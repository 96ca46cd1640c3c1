/**
 * The xattrs of a whole tree in one child process: Node has no xattr API, and
 * one `getfattr -R` beats a process per file. Paths come back relative to the
 * root ('' is the root itself); names and values as byte strings (latin1).
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { runProcess } from '@conveyor/lib-common/subprocess';

const utf8 = new TextDecoder('utf-8', { fatal: true });

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

/** Every xattr under `root` (symlinks not followed), by path relative to `root`. */
export async function readXattrTree(root: string): Promise<Map<string, Map<string, string>>> {
  const result = await runProcess('getfattr', ['--absolute-names', '-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--', root], {
    maxBuffer: 1 << 30,
  });
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_STORE_IO', `cannot run getfattr: ${result.originalMessage}`, {
      hint: result.code === 'ENOENT' ? "install Debian's attr package" : undefined,
    });
  }
  if (result.failed) throw new ConveyorError('ERR_STORE_IO', `getfattr ${root} failed: ${result.stderr.trim() || `exit ${result.exitCode}`}`);
  const tree = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const line of result.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      const path = unescapePath(line.slice('# file: '.length));
      const relative = path === root ? '' : path.startsWith(`${root}/`) ? path.slice(root.length + 1) : undefined;
      if (relative === undefined) throw new ConveyorError('ERR_STORE_IO', `getfattr reported ${path}, outside ${root}`);
      current = new Map();
      tree.set(relative, current);
      continue;
    }
    const equals = line.indexOf('=');
    if (!current || equals <= 0) continue;
    const value = line.slice(equals + 1);
    current.set(line.slice(0, equals), value.startsWith('0x') ? Buffer.from(value.slice(2), 'hex').toString('latin1') : '');
  }
  return tree;
}
