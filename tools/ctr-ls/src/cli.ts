import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: ctr-ls [OPTIONS]

List containers as NDJSON \`container\` records, or as a table like
\`docker ps\` when stdout is a terminal. Running containers by default.

What is listed is what is true now: a container whose supervisor or process
is gone shows as exited (code unknown), never as running. A container
directory without a state (a ctr-spawn killed early) shows as dead with -a.

Options:
  -a, --all                every container, not only running ones
  -f, --filter KEY=VALUE   id=PREFIX, name=REGEXP, status=created|running|exited|dead,
                           image=REF|DIGEST; repeatable: different keys all
                           match, one key's values any
      --no-trunc           full ids and commands in the table and with -q
      --json               NDJSON even on a terminal
      --table              a table even when piped
  -q, --quiet              print only ids (12 characters, full with --no-trunc)
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -h, --help               show this help
      --version            print the version

Examples:
  ctr-ls
  ctr-ls -a --filter status=exited
  ctr-ls -aq | ctr-rm
  ctr-ls | jq -c 'select(.image|test("busybox"))' | ctr-stop
  ctr-ls -a --filter name=web --filter name=db --filter status=running

Exit status: 0 listed (even nothing), 1 the store could not be read, 2 usage.
`;

await runCli({
  name: 'ctr-ls',
  // -q prints ids, one per line, for xargs: no error record among them.
  recordsOnStdout: (args) => !args.quiet,
  help: HELP,
  // `--no-trunc` is minimist's negation of `trunc`, on by default.
  spec: { boolean: ['all', 'trunc', 'json', 'table'], multiple: ['filter'], alias: { a: 'all', f: 'filter' }, default: { trunc: true } },
  main: async (ctx) => {
    const { parseFilters } = await import('./filter.js');
    const { listContainerRecords } = await import('./list.js');
    const filters = parseFilters(ctx.args.filter as string[]);
    if (ctx.args._.length > 0) throw new ConveyorError('ERR_USAGE', `unexpected argument ${ctx.args._[0]}`, { hint: 'select containers with --filter' });
    // The store (and the crypto, locks and processes it brings) only past --help: a pipeline pays every tool's start.
    const { Store } = await import('@conveyor/lib-common/store');
    const store = new Store(ctx.root);
    const containers = await listContainerRecords(store, { all: Boolean(ctx.args.all), filters, warn: (message) => ctx.log.warn(message) });
    const noTrunc = ctx.args.trunc === false;
    if (ctx.args.quiet) {
      for (const c of containers) ctx.print(`${noTrunc ? c.id : c.id.slice(0, 12)}\n`);
      return;
    }
    if (ctx.args.table || (ctx.humanOutput && !ctx.args.json)) {
      const { containerTable } = await import('./table.js');
      ctx.print(containerTable(containers, { noTrunc }));
      return;
    }
    for (const c of containers) await ctx.out.write(c);
  },
});
