import { intFlag } from '@conveyor/lib-common/args';
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: ctr-logs [OPTIONS] CONTAINER
       ctr-logs [OPTIONS] < container-record

Print the output of a container started with ctr-spawn -d: what it wrote to
stdout goes to stdout, what it wrote to stderr to stderr, in the order it
was logged. CONTAINER is a name, a full id, or a unique prefix of an id; with
none, the first \`container\` record on stdin (ctr-ls output) names it.

Options:
  -f, --follow             keep printing new output until the container ends
  -n, --tail N             only the last N lines (then follow, with -f)
      --since TIME         only output from TIME on: RFC 3339
                           (2026-11-29T21:00:00Z), Unix seconds, or a duration
                           before now (10m, 1h30m)
  -t, --timestamps         prefix each line with its time (RFC 3339)
      --log-format FORMAT  text (default) or json: then every line is a \`log\`
                           record on stdout ({type, v, id, stream, log, time}),
                           and messages on stderr are JSON
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
  -q, --quiet              fewer messages
  -h, --help               show this help
      --version            print the version

Examples:
  ctr-logs web
  ctr-logs -f --tail 20 web
  ctr-logs --since 10m -t 3f4c2a
  ctr-logs web 2>/dev/null              # stdout only
  ctr-logs --log-format=json web | jq -r 'select(.stream=="stderr") | .log'

Exit status: 0 printed (a container without a log prints nothing), 1 no such
container, an ambiguous prefix, or an unreadable store, 2 usage or bad input.
`;

await runCli({
  name: 'ctr-logs',
  // stdout is the container's output unless it is `log` records.
  recordsOnStdout: (args) => args['log-format'] === 'json',
  help: HELP,
  spec: { string: ['tail', 'since'], boolean: ['follow', 'timestamps'], alias: { f: 'follow', n: 'tail', t: 'timestamps' } },
  main: async (ctx) => {
    const args = ctx.args;
    if (args._.length > 1) throw new ConveyorError('ERR_USAGE', 'one container at a time', { hint: 'ctr-logs NAME' });
    const tailRaw = typeof args.tail === 'string' ? args.tail : undefined;
    const tail = tailRaw === undefined || tailRaw === 'all' ? undefined : intFlag(args, 'tail', 0, 0);
    const { parseSince } = await import('./since.js');
    const since = typeof args.since === 'string' ? parseSince(args.since, Date.now()) : undefined;
    const { trustedRecordStore } = await import('@conveyor/lib-common/overlay/record-paths');
    const { resolveContainer } = await import('@conveyor/lib-common/container/state');
    const { containerQuery } = await import('./input.js');
    const query = args._[0] ?? (await containerQuery(ctx.stdin));
    const store = await trustedRecordStore({}, ctx.root, { warn: (message) => ctx.log.warn(message) });
    const container = await resolveContainer(store, query);
    const { logRecord, printLogs } = await import('./logs.js');
    const json = args['log-format'] === 'json';
    const write = (stream: NodeJS.WriteStream, text: string) =>
      new Promise<void>((resolve) => {
        if (stream.write(text)) resolve();
        else stream.once('drain', resolve);
      });
    await printLogs(
      store,
      container.id,
      { follow: Boolean(args.follow), tail, since },
      {
        entry: async (entry) => {
          if (json) return ctx.out.write(logRecord(container.id, entry));
          await write(entry.stream === 'stderr' ? ctx.stderr : ctx.stdout, args.timestamps ? `${entry.time} ${entry.log}` : entry.log);
        },
      },
    );
  },
});
