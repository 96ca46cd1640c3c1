import { flag } from '@conveyor/lib-common/args';
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: ctr-exec [OPTIONS] CONTAINER COMMAND [ARG...]

Run COMMAND in a running container (by name, id or unique id prefix), as
docker exec does: in the container's namespaces and cgroup, under its seccomp
filter and capabilities, with its environment, user and working directory
unless overridden. stdout and stderr are the command's; stdin is /dev/null
unless -i. Exits with the command's exit code (128+N when killed by signal N).
Signals sent to ctr-exec go to the command.

Options:
  -i, --interactive        attach stdin
  -t, --tty                allocate a terminal (needs one: stdin or /dev/tty)
  -d, --detach             start the command in the background and return;
                           its output is discarded
  -e, --env KEY[=VAL]      set a variable (KEY alone: take it from here); repeatable
      --env-file FILE      read KEY=VAL lines; repeatable; -e wins
  -u, --user USER[:GROUP]  name or uid, resolved in the container's /etc/passwd
                           (also sets HOME to that user's home unless -e HOME=)
  -w, --workdir DIR        working directory in the container (absolute)
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json
  -q, --quiet              fewer messages
  -h, --help               show this help
      --version            print the version

Examples:
  ctr-exec web ps
  ctr-exec -it web sh
  echo hi | ctr-exec -i 3f2a cat
  ctr-exec -u nobody -w /tmp -e DEBUG=1 web sh -c 'id; pwd; echo $DEBUG'
  ctr-exec -d web sh -c 'sleep 100 &'

Exit status: the command's own code; 1 no such container, ambiguous prefix or
not running; 2 usage; 125 the command could not be started (runtime failure,
unknown -u user, -w in /proc); 126 not executable; 127 not found.
`;

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

await runCli({
  name: 'ctr-exec',
  // stdout is the command's: no error record goes there.
  recordsOnStdout: () => false,
  help: HELP,
  spec: {
    string: ['user', 'workdir'],
    multiple: ['env', 'env-file'],
    boolean: ['interactive', 'tty', 'detach'],
    alias: { i: 'interactive', t: 'tty', d: 'detach', e: 'env', u: 'user', w: 'workdir' },
    // Flags after the container belong to the command: ctr-exec web ls -l.
    stopEarly: true,
  },
  main: async (ctx) => {
    const args = ctx.args;
    const [query, ...rest] = args._;
    const command = rest[0] === '--' ? rest.slice(1) : rest;
    if (query === undefined) throw new ConveyorError('ERR_USAGE', 'no container given', { hint: 'ctr-exec CONTAINER COMMAND [ARG...]' });
    if (command.length === 0) throw new ConveyorError('ERR_USAGE', 'no command given', { hint: `ctr-exec ${query} COMMAND [ARG...]` });
    const detach = Boolean(args.detach);
    const interactive = Boolean(args.interactive);
    const tty = Boolean(args.tty);
    if (detach && (interactive || tty)) throw new ConveyorError('ERR_USAGE', '-d cannot be combined with -i or -t');

    const [{ Store, assertTrustedStore }, { readState, resolveContainer }, { readEnvFile, resolveEnvEntries }] = await Promise.all([
      import('@conveyor/lib-common/store'),
      import('@conveyor/lib-common/container/state'),
      import('@conveyor/lib-common/container/env'),
    ]);
    const envFiles = args['env-file'] as string[];
    const env = [...(await Promise.all(envFiles.map((f) => readEnvFile(f, ctx.env)))).flat(), ...resolveEnvEntries(args.env as string[], ctx.env)];
    // The runtime named in the store's state files runs as us: the store must be ours alone.
    await assertTrustedStore(ctx.root);
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const entry = await resolveContainer(store, query);
    // Read again for its error: a listing hides a corrupt state file (ERR_STORE_CORRUPT).
    const state = entry.state ?? (await readState(store, entry.id));
    if (!state) {
      throw new ConveyorError('ERR_CONTAINER_NOT_RUNNING', `container ${entry.id.slice(0, 12)} is not running (it has no state)`, {
        hint: 'remove the leftover with ctr-rm -f',
      });
    }

    const [{ execInContainer }, { SignalForwarder, signalExit }, { containerStdin }] = await Promise.all([
      import('@conveyor/lib-common/container/exec'),
      import('@conveyor/lib-common/container/signals'),
      import('@conveyor/lib-common/container/tty'),
    ]);
    const signals = new SignalForwarder((handler) => {
      for (const signal of FORWARDED) process.on(signal, handler);
      return () => {
        for (const signal of FORWARDED) process.off(signal, handler);
      };
    });
    try {
      const stdin = containerStdin({ interactive, tty }, { stdin: 0, inputIsStdin: false, stdinIsTTY: Boolean(process.stdin.isTTY) });
      try {
        if (signals.pending) return signalExit(signals.pending);
        return await execInContainer(
          store,
          state,
          // An unprivileged user: the runtime joins the container's user namespace (lib-common container/exec).
          { command, env, user: flag(args, 'user'), workdir: flag(args, 'workdir'), tty, detach, fromOutside: (process.geteuid?.() ?? 0) !== 0 },
          {
            stdio: detach ? ['ignore', 'ignore', 'ignore'] : [stdin.fd, 1, 2],
            usesTerminal: stdin.usesTerminal,
            onStart: (child) => signals.attach(child, true),
          },
        );
      } finally {
        stdin.close();
      }
    } finally {
      signals.close();
    }
  },
});
