import { flag } from '@conveyor/lib-common/args';
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError, EXIT, toConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: ctr-rm [OPTIONS] [CONTAINER...]
       ctr-rm --prune

Remove stopped containers and everything they left: the runtime's state,
cgroups, overlay mounts, the container directory and the name. A running
container is refused unless -f, which kills it (SIGKILL) first, as
\`docker rm -f\` does. A container directory without state (a ctr-spawn
killed early; ctr-ls -a shows it as dead) is removed too.

CONTAINER is an id, a unique id prefix or a name. Without arguments, stdin is
read: \`container\` records (from ctr-ls; only their id is used, looked up in
the store), or one id or name per line. Records of other types pass through.
A \`removed\` record is printed for each container removed.

--prune removes every stopped container and every leftover directory older
than a minute, as \`docker container prune\` (without asking).

Options:
  -f, --force              kill running containers, then remove them
  -v, --volumes            remove the anonymous volumes the containers made (image
                           VOLUMEs, -v /path); named volumes stay (vol-rm)
      --prune              remove all stopped containers and leftovers
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no warnings
  -h, --help               show this help
      --version            print the version

Examples:
  ctr-rm web
  ctr-rm -f 3f2a
  ctr-rm -v web            # and its anonymous volumes
  ctr-ls -aq --filter status=exited | ctr-rm
  ctr-ls | jq -c 'select(.image|test("busybox"))' | ctr-rm -f
  ctr-rm --prune

Exit status: 0 every container removed, 1 one failed (unknown id, ambiguous
prefix, running without -f, an unmount failed; the others are still
removed), 2 usage or a malformed input line.
`;

await runCli({
  name: 'ctr-rm',
  help: HELP,
  spec: { boolean: ['force', 'prune', 'volumes'], alias: { f: 'force', v: 'volumes' } },
  // Run by a user: inside the store's user namespace, where its mounts are and files of subordinate ids can be removed
  // (docs/rootless.md). With -f, first outside: the user may signal any of its containers from there, also one whose
  // keeper died, which a new keeper may not (remove.ts); then inside, again, without -f.
  userNamespace: (args) => !args.force || Boolean(args.prune),
  main: async (ctx) => {
    const { forceRemoveOutside, prune, removeOne } = await import('./remove.js');
    // The store (and the crypto, locks and processes it brings) only past --help: a pipeline pays every tool's start.
    const { Store } = await import('@conveyor/lib-common/store');
    const store = new Store(ctx.root);
    const warn = (message: string) => ctx.log.warn(message);
    if (ctx.args.prune) {
      if (ctx.args._.length > 0) throw new ConveyorError('ERR_USAGE', '--prune takes no containers', { hint: 'ctr-rm --prune removes every stopped one' });
      const failures = await prune(store, {
        onRemoved: (record) => ctx.out.write(record),
        onError: (id, error) => {
          const err = toConveyorError(error);
          ctx.log.error(new ConveyorError(err.code, `${id.slice(0, 12)}: ${err.message}`, { hint: err.hint }));
        },
        warn,
      });
      return failures > 0 ? EXIT.FAILED : EXIT.OK;
    }
    if (ctx.args._.length === 0 && ctx.stdin.isTTY)
      throw new ConveyorError('ERR_USAGE', 'name at least one container', { hint: 'or pipe container records or ids into stdin' });
    const { actOnTargets } = await import('@conveyor/lib-common/container/targets');
    const targets = { store, args: ctx.args._, input: ctx.stdin, out: ctx.out, log: ctx.log };
    if (ctx.args.force && (process.geteuid?.() ?? 0) !== 0) {
      // The runtime named in the store's state files runs as us: the store must be ours alone.
      await (await import('@conveyor/lib-common/store')).assertTrustedStore(ctx.root);
      const { runProcess } = await import('@conveyor/lib-common/subprocess');
      const format = flag(ctx.args, 'log-format');
      // This tool again, without -f: runCli runs it inside the keeper.
      const removeInside = async (ids: string[]) => {
        const again = [
          `--root=${ctx.root}`,
          ...(format ? [`--log-format=${format}`] : []),
          ...(ctx.args.quiet ? ['-q'] : []),
          ...(ctx.args.volumes ? ['-v'] : []),
          ...ids,
        ];
        const inside = await runProcess(process.execPath, [...process.execArgv, process.argv[1], ...again], { stdout: 'inherit', stderr: 'inherit' });
        return inside.exitCode ?? EXIT.FAILED;
      };
      return forceRemoveOutside(targets, removeInside);
    }
    return actOnTargets({
      ...targets,
      act: (entry) => removeOne(store, entry, { force: Boolean(ctx.args.force), volumes: Boolean(ctx.args.volumes), warn }),
    });
  },
});
