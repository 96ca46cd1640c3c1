import { runCli } from '@conveyor/lib-common/cli';
import { Store } from '@conveyor/lib-common/store';
import { listImages } from './list.js';
import { imageTable } from './table.js';

const HELP = `Usage: img-ls [OPTIONS] [PATTERN...]

List the images in the local store as NDJSON \`image\` records (the same shape
img-fetch emits), or as a table when stdout is a terminal.

A PATTERN is a reference or a glob over it: \`alpine\` (every tag), \`alpine:3*\`,
\`localhost:5000/*\`, \`docker.io/library/busybox:latest\`.

Options:
      --json               NDJSON even on a terminal
      --table              a table even when piped
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              print only references
  -h, --help               show this help
      --version            print the version

Examples:
  img-ls
  img-ls alpine | layer-unpack | ctr-spawn -- echo hi
  img-ls | jq -c 'select(.size > 1e8)'
  img-ls -q 'localhost:5000/*'

Exit status: 0 listed (even nothing), 1 the store could not be read, 2 usage.
`;

await runCli({
  name: 'img-ls',
  help: HELP,
  spec: { boolean: ['json', 'table'] },
  main: async (ctx) => {
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const images = await listImages(store, {
      patterns: ctx.args._,
      onBroken: (ref, error) => ctx.log.warn(`skipping ${ref}: ${error.message}`),
    });
    if (ctx.args.quiet) {
      for (const image of images) ctx.stdout.write(`${image.ref}\n`);
      return;
    }
    const table = ctx.args.table || (ctx.humanOutput && !ctx.args.json);
    if (!table) {
      for (const image of images) await ctx.out.write(image);
      return;
    }
    ctx.stdout.write(imageTable(images));
  },
});
