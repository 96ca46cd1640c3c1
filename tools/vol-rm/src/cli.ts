import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: vol-rm [OPTIONS] [VOLUME...]
       vol-rm --prune [--all]

Remove volumes and their content, as \`docker volume rm\`. A volume that a
container uses (running or stopped: ctr-ls -a) is refused unless -f; remove
the container first (ctr-rm -v also removes its anonymous volumes).

VOLUME is a volume name. Without arguments, stdin is read: \`volume\` records
(from vol-ls; only their name is used, looked up in the store), or one name
per line. Records of other types pass through. A \`removed\` record is
printed for each volume removed.

--prune removes every volume no container uses: anonymous ones (image
VOLUMEs, -v /path), and named ones too with --all, as \`docker volume prune\`
(without asking).

Options:
  -f, --force              remove volumes in use too; a missing volume is no error
      --prune              remove every unused anonymous volume
  -a, --all                with --prune: unused named volumes too
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no warnings
  -h, --help               show this help
      --version            print the version

Examples:
  vol-rm cache
  vol-ls --filter dangling=true | vol-rm
  vol-rm --prune --all

Exit status: 0 every volume removed, 1 one failed (no such volume, in use;
the others are still removed), 2 usage or a malformed input line.
`;

await runCli({
  name: 'vol-rm',
  help: HELP,
  spec: { boolean: ['force', 'prune', 'all'], alias: { f: 'force', a: 'all' } },
  main: async (ctx) => {
    const { pruneVolumes, removeTargets, volumeTargets } = await import('./remove.js');
    const { pipeline } = await import('@conveyor/lib-common/pipeline');
    // The store (and the crypto, locks and processes it brings) only past --help: a pipeline pays every tool's start.
    const { Store } = await import('@conveyor/lib-common/store');
    const store = new Store(ctx.root);
    if (ctx.args.prune) {
      if (ctx.args._.length > 0) throw new ConveyorError('ERR_USAGE', '--prune takes no volumes', { hint: 'vol-rm --prune removes every unused one' });
      await pruneVolumes(store, { all: Boolean(ctx.args.all), out: ctx.out });
      return;
    }
    if (ctx.args.all) throw new ConveyorError('ERR_USAGE', '--all goes with --prune');
    if (ctx.args._.length === 0 && ctx.stdin.isTTY)
      throw new ConveyorError('ERR_USAGE', 'name at least one volume', { hint: 'or pipe volume records or names into stdin' });
    return removeTargets(store, volumeTargets(ctx.args._, ctx.stdin), {
      out: ctx.out,
      force: Boolean(ctx.args.force),
      report: (error) => {
        ctx.log.error(error);
        // The tools downstream hear of it too (an `error` record in the stream), as ctr-rm's failures.
        void pipeline.reportOwn(error);
      },
    });
  },
});
