import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-tag [OPTIONS] SOURCE TARGET...

Give an image in the local store more names, as \`docker tag\` does: each
TARGET becomes a reference to the same manifest as SOURCE (nothing is copied).
A TARGET that named another image is moved. Prints one \`image\` record per
TARGET (NDJSON; the references alone on a terminal), so \`img-tag | img-push\`
pushes what it named.

SOURCE is a reference in the store (\`app:dev\`, \`localhost:5000/app@sha256:…\`);
a TARGET is [REGISTRY[:PORT]/]NAME[:TAG] (\`:latest\` when no tag is given; a
digest cannot be given).

Options:
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json (one object per line with a stable code)
  -q, --quiet              print nothing
  -h, --help               show this help
      --version            print the version

Examples:
  img-tag app:dev registry.example.com/team/app:1.2
  img-tag app:dev registry.example.com/team/app:1.2 && img-push registry.example.com/team/app:1.2
  img-tag busybox localhost:5000/tools/busybox:stable localhost:5000/tools/busybox:1 | img-push
  img-tag localhost:5000/app@sha256:4f3c… localhost:5000/app:known-good

Exit status: 0 tagged, 1 the source is not in the store (or the store failed), 2 usage or bad reference.
`;

await runCli({
  name: 'img-tag',
  help: HELP,
  main: async (ctx) => {
    const [source, ...targets] = ctx.args._.map(String);
    if (source === undefined || targets.length === 0) {
      throw new ConveyorError('ERR_USAGE', 'img-tag needs a SOURCE and at least one TARGET', { hint: 'img-tag app:dev localhost:5000/app:1.2; see --help' });
    }
    const { Store } = await import('@conveyor/lib-common/store');
    const { tagImage } = await import('./tag.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const records = await tagImage(store, source, targets, () => ctx.log.info('waiting for img-prune to finish'));
    if (ctx.args.quiet) return;
    for (const record of records) {
      if (ctx.humanOutput) ctx.print(`${record.ref}\n`);
      else await ctx.out.write(record);
    }
  },
});
