import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-inspect [OPTIONS] [REFERENCE...]

Describe local images whole, as \`docker image inspect\`: one \`inspect\` record
per image with the fields of its \`image\` record, Docker's id (the config
digest), the names and repository digests the store knows it by, its unpacked
size, and the whole manifest, config (\`imageConfig\`) and history. On a
terminal the records are printed as one indented JSON array, as docker does.

With no REFERENCE, references are read from stdin: one bare reference per
line, or \`image\`, \`rootfs\` and \`mount\` records by their \`ref\` (so
\`img-ls | img-inspect\` works); other records pass through unchanged.
A reference names an image as img-ls lists it: \`busybox\`, \`mybox:short\`
(a name skopeo wrote), \`localhost:5000/app@sha256:…\`. Nothing is fetched.

Options:
      --json               NDJSON even on a terminal
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no info messages
  -h, --help               show this help
      --version            print the version

Examples:
  img-inspect busybox
  img-inspect alpine | jq '.imageConfig.config.Env'
  img-ls 'localhost:5000/*' | img-inspect | jq -r '.repoDigests[]'

Exit status: 0 every image described, 1 one was not in the store or could not
be read (the others are still described), 2 usage or bad input.
`;

await runCli({
  name: 'img-inspect',
  help: HELP,
  spec: { boolean: ['json'] },
  main: async (ctx) => {
    const { Store } = await import('@conveyor/lib-common/store');
    const { eachLocalImage, IMAGE_RECORD_TYPES } = await import('@conveyor/lib-common/image-input');
    const { argumentItems, readReferences } = await import('@conveyor/lib-common/reference-input');
    const { inspectRecord } = await import('./inspect.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    if (ctx.args._.length === 0 && ctx.stdin.isTTY) {
      throw new ConveyorError('ERR_USAGE', 'no reference given', { hint: 'name an image (img-inspect busybox) or pipe img-ls into it; see --help' });
    }
    const items = ctx.args._.length > 0 ? argumentItems(ctx.args._) : readReferences(ctx.stdin, IMAGE_RECORD_TYPES);
    // docker prints one JSON array on a terminal: collected, printed at the end.
    const pretty = ctx.humanOutput && !ctx.args.json;
    const collected: unknown[] = [];
    const code = await eachLocalImage(store, items, {
      onImage: async (image) => {
        const record = await inspectRecord(store, image);
        if (pretty) collected.push(record);
        else await ctx.out.write(record);
      },
      write: (record) => ctx.out.write(record),
      error: (error) => ctx.log.error(error),
    });
    if (pretty) ctx.print(`${JSON.stringify(collected, null, 4)}\n`);
    return code;
  },
});
