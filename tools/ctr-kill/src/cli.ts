import { runCli } from '@conveyor/lib-common/cli';
import { flag } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: ctr-kill [OPTIONS] [CONTAINER...]

Send a signal (default SIGKILL) to running containers, as \`docker kill\`
does; it does not wait for them to end. A container that is not running is
refused (ERR_CONTAINER_NOT_RUNNING).

CONTAINER is an id, a unique id prefix or a name. Without arguments, stdin is
read: \`container\` records (from ctr-ls; only their id is used, looked up in
the store), or one id or name per line. Records of other types pass through.
The \`container\` record of each container signalled is printed.

Options:
  -s, --signal SIGNAL      the signal: a name (KILL, SIGHUP) or a number (9)
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no warnings
  -h, --help               show this help
      --version            print the version

Examples:
  ctr-kill web
  ctr-kill -s HUP 3f2a
  ctr-ls --filter name=worker | ctr-kill -s SIGUSR1

Exit status: 0 every container signalled, 1 one failed (unknown id, ambiguous
prefix, not running; the others are still signalled), 2 usage, a bad signal
or a malformed input line.
`;

await runCli({
  name: 'ctr-kill',
  help: HELP,
  spec: { string: ['signal'], alias: { s: 'signal' } },
  main: async (ctx) => {
    const { killContainer, parseSignal } = await import('@conveyor/lib-common/container/stop');
    const { actOnTargets, containerRecordOf } = await import('@conveyor/lib-common/container/targets');
    const signal = parseSignal(flag(ctx.args, 'signal') ?? 'KILL');
    if (ctx.args._.length === 0 && ctx.stdin.isTTY)
      throw new ConveyorError('ERR_USAGE', 'name at least one container', { hint: 'or pipe container records or ids into stdin' });
    // The store (and the crypto, locks and processes it brings) only past --help: a pipeline pays every tool's start.
    const { Store } = await import('@conveyor/lib-common/store');
    const store = new Store(ctx.root);
    return actOnTargets({
      store,
      args: ctx.args._,
      input: ctx.stdin,
      out: ctx.out,
      log: ctx.log,
      act: async (entry) => containerRecordOf(store, { ...entry, state: await killContainer(entry, signal) }),
    });
  },
});
