import { flag } from '@conveyor/lib-common/args';
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: ctr-stats [OPTIONS] [CONTAINER...]

Stream the resource usage of running containers (by name, id or unique id
prefix; default: every running one, and those that start while it runs) as
NDJSON \`stats\` records, one per container per interval, or as docker stats'
table when stdout is a terminal. Read from each container's cgroup (v2, or v1
where that is what the host has): CPU % (100 per fully used CPU), memory
without inactive page cache against its limit (the host's memory when
unlimited), processes, block I/O, and network I/O of the container's own
interfaces. A container that ends drops out; ctr-stats exits 0 when none is left.

Options:
      --no-stream          one record per container, then exit (takes one interval)
      --interval SECONDS   time between samples (default 1; fractions allowed)
      --json               NDJSON even on a terminal
      --table              a table even when piped
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              fewer messages
  -h, --help               show this help
      --version            print the version

Examples:
  ctr-stats
  ctr-stats --no-stream web db
  ctr-stats --interval 5 web | jq -c '{time, cpuPercent, memoryUsage}'
  ctr-stats --no-stream | jq -s 'max_by(.memoryUsage) | .name'

Exit status: 0 done (every container ended, or --no-stream), 1 no such
container, an ambiguous prefix, or a named container not running, 2 usage.
`;

await runCli({
  name: 'ctr-stats',
  help: HELP,
  spec: { string: ['interval'], boolean: ['stream', 'json', 'table'], default: { stream: true } },
  main: async (ctx) => {
    const args = ctx.args;
    const rawInterval = flag(args, 'interval') ?? '1';
    const seconds = Number(rawInterval);
    if (!/^\d+(\.\d+)?$/.test(rawInterval) || seconds < 0.1 || seconds > 3600) {
      throw new ConveyorError('ERR_USAGE', `--interval must be a number of seconds from 0.1 to 3600, got ${JSON.stringify(rawInterval)}`);
    }
    const stream = args.stream !== false;
    const table = Boolean(args.table) || (ctx.humanOutput && !args.json);
    const [{ Store }, { watchStats }, { totalmem }] = await Promise.all([import('@conveyor/lib-common/store'), import('./watch.js'), import('node:os')]);
    const statsTable = table ? (await import('./table.js')).statsTable : undefined;
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    return watchStats({
      store,
      queries: args._,
      intervalMs: Math.round(seconds * 1000),
      stream,
      hostMemory: totalmem(),
      warn: (message) => ctx.log.warn(message),
      emit: async (records) => {
        if (!statsTable) {
          for (const record of records) await ctx.out.write(record);
          return;
        }
        // Streaming to a terminal: redraw in place, as docker stats does.
        ctx.print((stream && ctx.humanOutput ? '\x1b[2J\x1b[H' : '') + statsTable(records));
      },
    });
  },
});
