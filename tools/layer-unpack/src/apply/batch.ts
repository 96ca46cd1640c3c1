/**
 * The operations Node has no API for, batched into one child process per
 * layer: `mknod` (overlay whiteouts, fifos) through one `sh`, and xattrs
 * through one `setfattr -h --restore=-`. Callers verify every path right
 * before calling; paths are absolute and passed as arguments or escaped
 * octal, never through a shell's word splitting.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { runProcess } from '@conveyor/lib-common/subprocess';

/** Arguments per `sh` process; a layer with more whiteouts than this uses several. */
const MKNOD_ARGS_PER_PROCESS = 2000;

const MKNOD_SCRIPT = `set -e
for a; do
  case "$a" in
    c:*) mknod -m 000 -- "\${a#c:}" c 0 0 ;;
    p:*) mknod -m 600 -- "\${a#p:}" p ;;
    *) echo "bad argument" >&2; exit 2 ;;
  esac
done`;

/**
 * Runs `command` to the end: its exit code (null when killed by a signal) and
 * the start of its stderr. A program that cannot be started is ERR_STORE_IO
 * naming the package to install.
 */
async function run(command: string, args: string[], input?: string): Promise<{ code: number | null; stderr: string }> {
  const result = await runProcess(command, args, { input, stdout: 'ignore', maxBuffer: 4000 });
  if (result.code !== undefined) {
    throw new ConveyorError('ERR_STORE_IO', `cannot run ${command}: ${result.originalMessage}`, {
      hint: result.code === 'ENOENT' ? `install ${command === 'setfattr' ? "Debian's attr package" : 'coreutils'}` : undefined,
    });
  }
  return { code: result.exitCode ?? null, stderr: result.stderr.trim() };
}

/**
 * Each argument is `c:/abs/path` (a 0/0 character device: an overlay
 * whiteout) or `p:/abs/path` (a fifo). Arguments are text: callers pass
 * ASCII paths and rename the nodes to their real names themselves.
 */
export async function mknodBatch(args: string[]): Promise<void> {
  for (let i = 0; i < args.length; i += MKNOD_ARGS_PER_PROCESS) {
    const chunk = args.slice(i, i + MKNOD_ARGS_PER_PROCESS);
    const { code, stderr } = await run('sh', ['-c', MKNOD_SCRIPT, 'sh', ...chunk]);
    if (code !== 0) throw new ConveyorError('ERR_STORE_IO', `mknod failed: ${stderr || `exit ${code}`}`);
  }
}

/** getfattr/setfattr's escaping: every byte outside a safe set as \\ooo octal. `path` is a byte string (latin1). */
export function escapeAttrPath(path: string): string {
  let out = '';
  for (const byte of Buffer.from(path, 'latin1')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9/._+,:@%^-]/.test(c) ? c : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return out;
}

/** Sets xattrs without following symlinks (paths and names are byte strings). Returns undefined on success, else setfattr's complaint. */
export async function setfattrBatch(entries: { path: string; attrs: [string, Buffer][] }[]): Promise<string | undefined> {
  if (entries.length === 0) return undefined;
  let text = '';
  for (const { path, attrs } of entries) {
    text += `# file: ${escapeAttrPath(path)}\n`;
    for (const [name, value] of attrs) text += `${escapeAttrPath(name)}=0s${value.toString('base64')}\n`;
    text += '\n';
  }
  const { code, stderr } = await run('setfattr', ['-h', '--restore=-'], text);
  return code === 0 ? undefined : stderr || `exit ${code}`;
}
