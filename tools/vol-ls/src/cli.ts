import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: vol-ls [OPTIONS]

List the store's volumes as NDJSON \`volume\` records, or as a table like
\`docker volume ls\` when stdout is a terminal. Named volumes come from
\`ctr-spawn -v NAME:/path\` or \`--mount type=volume,src=NAME,...\`; anonymous
ones (64-hex names) from an image's VOLUME or \`-v /path\`. Each record says
which containers (running or stopped) use the volume: a volume no container
uses is dangling.

Options:
  -f, --filter KEY=VALUE   dangling=true|false, name=TEXT (the name contains
                           TEXT; repeatable: any)
  -s, --size               count each volume's bytes (du; slower)
      --json               NDJSON even on a terminal
      --table              a table even when piped
  -q, --quiet              print only names
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -h, --help               show this help
      --version            print the version

Examples:
  vol-ls
  vol-ls --filter dangling=true | vol-rm
  vol-ls -q --filter name=data
  vol-ls --size | jq -c 'select(.size > 1e9)'

Exit status: 0 listed (even nothing), 1 the store could not be read, 2 usage.
`;

await runCli({
  name: 'vol-ls',
  // -q prints ids, one per line, for xargs: no error record among them.
  recordsOnStdout: (args) => !args.quiet,
  help: HELP,
  spec: { boolean: ['size', 'json', 'table'], multiple: ['filter'], alias: { f: 'filter', s: 'size' } },
  main: async (ctx) => {
    if (ctx.args._.length > 0) throw new ConveyorError('ERR_USAGE', `unexpected argument ${ctx.args._[0]}`, { hint: 'select volumes with --filter' });
    const { listVolumeRecords, parseFilters } = await import('./list.js');
    const filters = parseFilters(ctx.args.filter as string[]);
    const size = Boolean(ctx.args.size);
    // The store (and the crypto, locks and processes it brings) only past --help: a pipeline pays every tool's start.
    const { Store } = await import('@conveyor/lib-common/store');
    const records = await listVolumeRecords(new Store(ctx.root), { filters, size, warn: (message) => ctx.log.warn(message) });
    if (ctx.args.quiet) {
      for (const r of records) ctx.print(`${r.name}\n`);
      return;
    }
    if (ctx.args.table || (ctx.humanOutput && !ctx.args.json)) {
      const { volumeTable } = await import('./table.js');
      ctx.print(volumeTable(records, { size }));
      return;
    }
    for (const r of records) await ctx.out.write(r);
  },
});
