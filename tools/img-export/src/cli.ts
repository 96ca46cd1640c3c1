import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-export [OPTIONS] [REFERENCE...] [-o FILE|-]

Write images from the local store as one archive: by default what
\`docker save\` writes (read by \`docker load\` and skopeo's docker-archive:),
with --format oci an OCI image layout tarred (skopeo's oci-archive:), with
--format oci-dir the layout as a directory. Several images share their blobs.
With no REFERENCE, the images are read from stdin (\`image\` records by ref,
or bare references). The tar goes to stdout unless -o names a file; it is
never written to a terminal.

With --rootfs, the one IMAGE or CONTAINER named is written as a flat tar of its
filesystem (docker export): a running container's merged view, or an image's
unpacked layers (layer-unpack) mounted as a read-only overlay, whiteouts
applied; numeric owners, modes and mtimes kept, symlinks as links, hard links
as copies, devices, fifos, sockets and xattrs left out.

Options:
      --rootfs         export the filesystem of one image or container instead
  -o, --output FILE    write to FILE (through FILE.tmp, renamed when complete); - for stdout
      --format FORMAT  docker (default), oci or oci-dir (needs -o DIR, which must not exist)
      --root DIR       store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format F   text (default) or json
  -q, --quiet          no messages but errors
  -h, --help           show this help
      --version        print the version

Examples:
  img-export busybox -o busybox.tar && docker load -i busybox.tar
  img-export app:v1 app:v2 --format oci -o apps.tar
  img-ls 'localhost:5000/*' | img-export -o bundle.tar
  img-export alpine | ssh host docker load
  img-export --rootfs web -o web-fs.tar
  img-export --format oci-dir -o ./layout busybox && umoci ls --layout ./layout

Exit status: 0 written, 1 an image was not found or its blobs are corrupt
(nothing is written), 2 usage or bad input.
`;

const FORMATS = ['docker', 'oci', 'oci-dir'];

await runCli({
  name: 'img-export',
  // stdout is the archive: error records stay off it.
  recordsOnStdout: () => false,
  help: HELP,
  spec: { string: ['output', 'format'], boolean: ['rootfs'], alias: { o: 'output' } },
  main: async (ctx) => {
    const format = String(ctx.args.format ?? 'docker');
    if (!FORMATS.includes(format)) throw new ConveyorError('ERR_USAGE', `unknown --format ${format}`, { hint: 'docker, oci or oci-dir' });
    const output = ctx.args.output === undefined || ctx.args.output === '-' ? undefined : String(ctx.args.output);
    if (format === 'oci-dir' && !output) throw new ConveyorError('ERR_USAGE', '--format oci-dir needs -o DIR');
    if (!output && ctx.stdout.isTTY) {
      throw new ConveyorError('ERR_USAGE', 'refusing to write a tar archive to a terminal', {
        hint: 'name a file with -o FILE, or pipe stdout into a program',
      });
    }
    if (ctx.args._.length === 0 && ctx.stdin.isTTY) {
      throw new ConveyorError('ERR_USAGE', 'no reference given', { hint: 'name an image (img-export busybox -o b.tar) or pipe img-ls into it; see --help' });
    }
    const { Store } = await import('@conveyor/lib-common/store');
    if (ctx.args.rootfs) {
      if (ctx.args._.length !== 1)
        throw new ConveyorError('ERR_USAGE', '--rootfs exports one image or container', { hint: 'img-export --rootfs NAME -o fs.tar' });
      const { exportRootfs } = await import('./rootfs.js');
      const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
      await exportRootfs(store, String(ctx.args._[0]), output ?? ctx.stdout);
      return;
    }
    const { argumentItems, readReferences } = await import('@conveyor/lib-common/reference-input');
    const { IMAGE_RECORD_TYPES } = await import('@conveyor/lib-common/image-input');
    const { exportImages } = await import('./export.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const items = ctx.args._.length > 0 ? argumentItems(ctx.args._) : readReferences(ctx.stdin, IMAGE_RECORD_TYPES);
    return exportImages(store, items, {
      format: format as 'docker' | 'oci' | 'oci-dir',
      output,
      stdout: ctx.stdout,
      error: (error) => ctx.log.error(error),
      info: (message) => ctx.log.info(message),
    });
  },
});
