import { runCli } from '@conveyor/lib-common/cli';
import { intFlag, flag } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: ctr-stop [OPTIONS] [CONTAINER...]

Stop running containers: send each its stop signal (the image's StopSignal,
else SIGTERM), wait up to --time seconds for it to end, then SIGKILL, as
\`docker stop\` does. A container that is not running is left as it is.

CONTAINER is an id, a unique id prefix or a name. Without arguments, stdin is
read: \`container\` records (from ctr-ls; only their id is used, looked up in
the store), or one id or name per line. Records of other types pass through.
The \`container\` record of each container acted on is printed, as it is
after the stop.

Options:
  -t, --time SECONDS       seconds to wait before SIGKILL (default: the
                           container's stop timeout, else 10; -1: forever)
  -s, --signal SIGNAL      signal to stop with instead (TERM, SIGINT, 9...)
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no warnings
  -h, --help               show this help
      --version            print the version

Examples:
  ctr-stop web
  ctr-stop -t 0 3f2a
  ctr-ls | jq -c 'select(.image|test("busybox"))' | ctr-stop
  ctr-ls -q | ctr-stop -t 30

Exit status: 0 every container stopped, 1 one failed (unknown id, ambiguous
prefix; the others are still stopped), 2 usage or a malformed input line.
`;

await runCli({
  name: 'ctr-stop',
  help: HELP,
  spec: { string: ['time', 'signal'], alias: { t: 'time', s: 'signal' } },
  main: async (ctx) => {
    const { parseSignal, stopContainer } = await import('@conveyor/lib-common/container/stop');
    const { actOnTargets, containerRecordOf } = await import('@conveyor/lib-common/container/targets');
    const timeoutSeconds = flag(ctx.args, 'time') === undefined ? undefined : intFlag(ctx.args, 'time', 10, -1, 365 * 24 * 3600);
    const raw = flag(ctx.args, 'signal');
    const signal = raw === undefined ? undefined : parseSignal(raw);
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
      concurrency: 32,
      act: async (entry) => {
        const state = await stopContainer(store, entry, { timeoutSeconds, signal });
        return containerRecordOf(store, { ...entry, state });
      },
    });
  },
});
