import { runCli } from '@conveyor/lib-common/cli';

const HELP = `Usage: img-ls [OPTIONS] [PATTERN...]

List the images in the local store as NDJSON \`image\` records (the same shape
img-fetch emits, plus \`unpackedSize\` and \`repoDigest\`), or as a table when
stdout is a terminal, as \`docker images\` prints it.

A PATTERN is a reference or a glob over it: \`alpine\` (every tag), \`alpine:3*\`,
\`localhost:5000/*\`, \`docker.io/library/busybox:latest\`. Images other tools
wrote under a short name or a bare tag (skopeo's \`oci:STORE:mybox:short\`,
containerd's image name) answer to it as written and normalised. One image is
one row: an entry a pull by digest left beside a tag of the same image is
folded into it (shown with -a).

Options:
  -a, --all                every index entry, digest-pinned duplicates included
      --digests            show the DIGEST column (the digest a registry serves)
      --refs               print only references, one per line
      --json               NDJSON even on a terminal
      --table              a table even when piped
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              print only image IDs (the config digest's first 12 hex), as docker images -q
  -h, --help               show this help
      --version            print the version

Examples:
  img-ls
  img-ls --digests busybox
  img-ls alpine | layer-unpack | ctr-spawn -- echo hi
  img-ls | jq -c 'select(.unpackedSize > 1e8)'
  img-ls --refs 'localhost:5000/*'

Exit status: 0 listed (even nothing), 1 the store could not be read, 2 usage.
`;

await runCli({
  name: 'img-ls',
  // -q and --refs print one id or reference per line, for xargs: no error record among them.
  recordsOnStdout: (args) => !args.quiet && !args.refs,
  help: HELP,
  spec: { boolean: ['json', 'table', 'all', 'digests', 'refs'], alias: { a: 'all' } },
  main: async (ctx) => {
    // Loaded when needed: --help and --version load nothing but runCli (a pipeline pays every tool's start).
    const [{ Store }, { listImages }, { imageId, imageTable }] = await Promise.all([
      import('@conveyor/lib-common/store'),
      import('./list.js'),
      import('./table.js'),
    ]);
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const images = await listImages(store, {
      patterns: ctx.args._,
      all: Boolean(ctx.args.all),
      onBroken: (ref, error) => ctx.log.warn(`skipping ${ref}: ${error.message}`),
    });
    if (ctx.args.quiet || ctx.args.refs) {
      for (const image of images) ctx.print(`${ctx.args.refs ? image.ref : imageId(image)}\n`);
      return;
    }
    const table = ctx.args.table || (ctx.humanOutput && !ctx.args.json);
    if (!table) {
      for (const image of images) await ctx.out.write(image);
      return;
    }
    ctx.print(imageTable(images, { digests: Boolean(ctx.args.digests) }));
  },
});
