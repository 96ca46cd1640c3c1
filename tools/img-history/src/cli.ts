import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-history [OPTIONS] [REFERENCE...]

Show how local images were made, as \`docker history\`: one \`history\` record
per entry of the image config's history, newest first, with createdBy,
created, comment, emptyLayer and size (the layer's unpacked size, 0 for an
entry that made no layer). On a terminal, docker's table.

With no REFERENCE, references are read from stdin: one bare reference per
line, or \`image\`, \`rootfs\` and \`mount\` records by their \`ref\` (so
\`img-ls busybox | img-history\` works); other records pass through unchanged.
Nothing is fetched.

Options:
      --no-trunc           do not truncate CREATED BY in the table
      --json               NDJSON even on a terminal
      --table              a table even when piped
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no info messages
  -h, --help               show this help
      --version            print the version

Examples:
  img-history busybox
  img-history --no-trunc localhost:5000/app:v2
  img-history debian | jq -r 'select(.emptyLayer | not) | "\\(.size) \\(.createdBy)"'

Exit status: 0 every image shown, 1 one was not in the store or could not be
read (the others are still shown), 2 usage or bad input.
`;

await runCli({
  name: 'img-history',
  help: HELP,
  spec: { boolean: ['json', 'table', 'trunc'], default: { trunc: true } },
  main: async (ctx) => {
    const { Store } = await import('@conveyor/lib-common/store');
    const { eachLocalImage, IMAGE_RECORD_TYPES } = await import('@conveyor/lib-common/image-input');
    const { argumentItems, readReferences } = await import('@conveyor/lib-common/reference-input');
    const { historyOf } = await import('./history.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    if (ctx.args._.length === 0 && ctx.stdin.isTTY) {
      throw new ConveyorError('ERR_USAGE', 'no reference given', { hint: 'name an image (img-history busybox) or pipe img-ls into it; see --help' });
    }
    const items = ctx.args._.length > 0 ? argumentItems(ctx.args._) : readReferences(ctx.stdin, IMAGE_RECORD_TYPES);
    const table = ctx.args.table || (ctx.humanOutput && !ctx.args.json);
    return eachLocalImage(store, items, {
      onImage: async (image) => {
        const records = await historyOf(store, image);
        if (!table) {
          for (const record of records) await ctx.out.write(record);
          return;
        }
        const { historyRows, historyTable } = await import('./table.js');
        ctx.print(historyTable(historyRows(records, image.record.configDescriptor.digest.slice(7, 19), { noTrunc: ctx.args.trunc === false })));
      },
      write: (record) => ctx.out.write(record),
      error: (error) => ctx.log.error(error),
    });
  },
});
