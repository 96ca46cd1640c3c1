import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-df [OPTIONS]

Show what the store holds and what a prune would free, as \`docker system df\`:
one \`df\` record per kind (images, layers, containers, build-cache) with total, active,
size and reclaimable; a table on a terminal.

  images      the images of index.json; active: a container was made from it;
              size: the blobs on disk; reclaimable: what img-prune -a would delete
  layers      unpacked layer directories; active: mounted under a container now;
              reclaimable: what img-prune -a would delete
  containers  container directories; active: running; reclaimable: the stopped
              ones (ctr-rm)
  build-cache img-build's step cache entries; size: the entries and the blobs
              and layers they list; reclaimable: the entries and what only they
              keep (img-prune --build-cache)

The figures come from img-prune's own dry run, so it waits, as img-prune does,
for pulls and unpacks in progress.

Options:
      --json               NDJSON even on a terminal
      --table              a table even when piped
      --timeout SECONDS    how long to wait for pulls and unpacks in progress (default 600)
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no info messages
  -h, --help               show this help
      --version            print the version

Examples:
  img-df
  img-df | jq -r 'select(.kind == "images") | .reclaimable'
  img-df | jq -r 'select(.kind == "build-cache") | .reclaimable' && img-prune --build-cache

Exit status: 0 shown, 1 the store could not be read (or stayed locked), 2 usage.
`;

await runCli({
  name: 'img-df',
  help: HELP,
  spec: { boolean: ['json', 'table'], string: ['timeout'] },
  main: async (ctx) => {
    if (ctx.args._.length > 0) throw new ConveyorError('ERR_USAGE', `img-df takes no arguments, got ${JSON.stringify(ctx.args._[0])}`, { hint: 'see --help' });
    const timeoutText = ctx.args.timeout as string | undefined;
    const seconds = timeoutText === undefined ? 600 : Number(timeoutText);
    if (!Number.isFinite(seconds) || seconds < 0 || timeoutText === '') {
      throw new ConveyorError('ERR_USAGE', `--timeout must be a number of seconds, got ${JSON.stringify(timeoutText)}`);
    }
    const { Store } = await import('@conveyor/lib-common/store');
    const { storeUsage } = await import('./usage.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const records = await storeUsage(store, {
      warn: (message) => ctx.log.warn(message),
      timeoutMs: seconds * 1000,
      onWait: (pids) =>
        ctx.log.info(
          pids.length === 0 ? 'waiting for an img-prune to finish' : `waiting for ${pids.length} pull(s) or unpack(s) to finish (pid ${pids.join(', ')})`,
        ),
    });
    if (ctx.args.table || (ctx.humanOutput && !ctx.args.json)) {
      const { dfTable } = await import('./table.js');
      ctx.print(dfTable(records));
      return;
    }
    for (const record of records) await ctx.out.write(record);
  },
});
