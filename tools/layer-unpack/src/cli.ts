import { intFlag, flag, parseBytes } from '@conveyor/lib-common/args';
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: layer-unpack [OPTIONS]
       layer-unpack --flatten DIR [OPTIONS] FILE...

Make image layers usable as filesystems. Reads \`image\` records (from img-fetch
or img-ls) on stdin and writes \`rootfs\` records: by default each layer is
unpacked once into the store, keyed by chain ID, as an overlayfs lower dir
(layers/<chain>/diff, whiteouts as 0/0 character devices, opaque directories
marked with trusted.overlay.opaque), and the record lists those dirs bottom
first in \`layerDirs\`. With --flatten, all layers go into one directory with
whiteouts applied, and the record carries \`dir\`.

\`layer\` records (img-fetch emits one per layer as soon as its blob is
verified) start unpacking at once, so unpacking overlaps the download, and
\`download\` records (one as a layer starts downloading) start it from the
growing file in the store's ingest/, committed once its blob is verified;
both are consumed. Other records pass through unchanged.

Layers are hostile input: nothing is ever written outside the target, no
symlink is followed, device nodes and trusted.* xattrs are skipped, and every
layer's uncompressed digest must match the image config's diff ID. Chain IDs
are recomputed from the diff IDs (and a \`layer\` record's parentChainID); a
record whose chain does not follow is refused, and a layer in the store is
reused only when its meta.json names the same chain, diff ID and parent.
A record's \`store\` other than --root must be owned and writable by root
alone (or by you, when not root). With --flatten, a warning says when other
users can reach DIR and it holds setuid, setgid or capability-bearing files.

With FILE arguments (and --flatten), applies those tarballs in order without a
store (gzip, zstd or plain tar, detected from their first bytes).

Options:
      --flatten DIR        apply all layers into DIR (new or empty)
      --root DIR           store root for records without one (default: $CONVEYOR_ROOT,
                           /var/lib/conveyor as root)
      --jobs N             layers unpacked in parallel (default 2)
      --threads N          threads creating files (default 2, shared by the layers
                           unpacked at once, at least one each; started only for a
                           layer that needs them; 0 = none, create them on the main
                           thread)
      --max-bytes SIZE     cap on file content written per layer (default 64g;
                           units k, m, g, t)
      --max-entries N      cap on tar entries per layer (default 2000000)
      --max-image-bytes SIZE
                           cap on file content of all of an image's layers together
                           (default 128g)
      --max-image-entries N
                           cap on tar entries of all of an image's layers (default 8000000)
      --rootless           apply no owner; record them in meta.json (as a user, owners
                           the store's user namespace maps are applied, the others recorded)
      --keep-going         report a failed image and go on with the next (exit 1 at the end)
      --progress MODE      auto, json, bar or none (stderr)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no informational messages
  -h, --help               show this help
      --version            print the version

Examples:
  img-fetch alpine | layer-unpack | ctr-spawn -- echo hi
  img-ls busybox | layer-unpack --flatten /tmp/bb
  layer-unpack --flatten ./rootfs layer1.tar.gz layer2.tar
  img-ls | layer-unpack --jobs 4 --progress=json 2>progress.ndjson | jq -r .layerDirs[]

Exit status: 0 done, 1 a layer failed (ERR_LAYER_MALICIOUS, ERR_LAYER_INVALID,
ERR_LAYER_TOO_LARGE, ERR_LAYER_COMPRESSION, ERR_DIGEST_MISMATCH, ERR_STORE_IO),
2 usage or bad input (ERR_USAGE, ERR_INPUT_JSON, ERR_INPUT_RECORD: also a record
naming a store another user could change).
`;

await runCli({
  name: 'layer-unpack',
  help: HELP,
  spec: { string: ['flatten', 'jobs', 'threads', 'max-bytes', 'max-entries', 'max-image-bytes', 'max-image-entries'], boolean: ['rootless', 'keep-going'] },
  // Not root: unpack into the store inside its user namespace (lib-common rootless/), where whiteouts can be made and mapped owners applied.
  userNamespace: (args) => flag(args, 'flatten') === undefined,
  main: async (ctx) => {
    const flatten = flag(ctx.args, 'flatten');
    const files = ctx.args._;
    if (files.length > 0 && flatten === undefined) {
      throw new ConveyorError('ERR_USAGE', 'layer files need --flatten DIR', { hint: 'layer-unpack --flatten ./rootfs layer1.tar.gz layer2.tar' });
    }
    if (flatten === '') throw new ConveyorError('ERR_USAGE', '--flatten needs a directory');
    const bytesFlag = (name: string, fallback: number) => {
      const raw = flag(ctx.args, name);
      return raw === undefined ? fallback : parseBytes(raw, `--${name}`);
    };
    const uid = process.getuid?.() ?? 0;
    // Inside the user namespace runCli put us in (uid 0 there), still rootless: mapped owners are applied, the others recorded.
    const { isRootless } = await import('@conveyor/lib-common/rootless/detect');
    const rootless = Boolean(ctx.args.rootless) || uid !== 0 || isRootless();
    const ownable = rootless && !ctx.args.rootless ? (await import('@conveyor/lib-common/rootless/subid')).ownableIds() : undefined;
    const opts = {
      defaultRoot: ctx.root,
      flatten,
      jobs: intFlag(ctx.args, 'jobs', 2, 1, 64),
      maxBytes: bytesFlag('max-bytes', 64 * 1024 ** 3),
      maxEntries: intFlag(ctx.args, 'max-entries', 2_000_000, 1),
      maxImageBytes: bytesFlag('max-image-bytes', 128 * 1024 ** 3),
      maxImageEntries: intFlag(ctx.args, 'max-image-entries', 8_000_000, 1),
      uid,
      rootless,
      ownable,
      keepGoing: Boolean(ctx.args['keep-going']),
      pid: process.pid,
      writerThreads: intFlag(ctx.args, 'threads', 2, 0, 16),
      log: ctx.log,
      progress: ctx.progress,
    };
    const { unpackFiles, unpackRecords } = await import('./records.js');
    if (files.length > 0) {
      await ctx.out.write(await unpackFiles(files, flatten!, opts));
      return 0;
    }
    const { inputLines } = await import('./input.js');
    // Read from fd 0 while idle, process.stdin (made only then) once work is pending: input.ts.
    return unpackRecords((idle) => inputLines({ fd: 0, stream: () => ctx.stdin, idle }), ctx.out, opts);
  },
});
