import { runCli } from '@conveyor/lib-common/cli';
import { storeUsesUserNamespace } from '@conveyor/lib-common/paths';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-prune [OPTIONS]

Collect the store's garbage: blobs and unpacked layers that no image
reference and no container needs, unpacked layers left half-made by a crash,
partial downloads nobody is resuming, dangling short links and registrations
of flattened trees that are gone, layers a dead img-build was packing, and
build-cache entries (img-build's step cache) that name a blob that is gone or
do not parse; what a valid build-cache entry lists stays. With --build-cache,
remove every build-cache entry and then what only it kept (docker builder
prune -a). With -a, also remove the references of images no container uses
(docker image prune -a), and the whole build cache. Prints one \`freed\` record
per object removed (and an \`untagged\` record per reference -a removes), then
a \`total\` record; "Total reclaimed space: SIZE" goes to stderr.

A prune never removes what a container (running or stopped) was made from,
nor a layer directory mounted as an overlay lower dir. It waits for pulls
(img-fetch) and unpacks (layer-unpack) in flight to finish, and they wait for
it, so it never deletes what they are about to reference.

Options:
  -a, --all                also remove images no container uses, tagged or not,
                           and the build cache
      --build-cache        remove every build-cache entry, then what only it kept
  -n, --dry-run            report what would be removed; remove nothing
      --timeout SECONDS    give up waiting for in-flight pulls and unpacks (default 600)
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json (one object per line with a stable code)
  -q, --quiet              no total line on stderr
  -h, --help               show this help
      --version            print the version

Examples:
  img-prune
  img-prune -a --dry-run | jq -r 'select(.type == "untagged") | .ref'
  img-prune --build-cache
  img-prune -a | jq -s 'map(select(.type == "freed")) | group_by(.kind) | map({kind: .[0].kind, n: length})'
  img-rm busybox && img-prune

Exit status: 0 pruned (even nothing), 1 the store could not be pruned (locked, I/O), 2 usage.
`;

await runCli({
  name: 'img-prune',
  help: HELP,
  // A user's store unpacked through its user namespace holds files of subordinate ids: removed from inside it.
  userNamespace: (_args, root) => storeUsesUserNamespace(root),
  spec: { boolean: ['all', 'dry-run', 'build-cache'], string: ['timeout'], alias: { a: 'all', n: 'dry-run' } },
  main: async (ctx) => {
    if (ctx.args._.length > 0)
      throw new ConveyorError('ERR_USAGE', `img-prune takes no arguments, got ${JSON.stringify(ctx.args._[0])}`, { hint: 'see --help' });
    const timeoutText = ctx.args.timeout as string | undefined;
    const seconds = timeoutText === undefined ? 600 : Number(timeoutText);
    if (!Number.isFinite(seconds) || seconds < 0 || timeoutText === '') {
      throw new ConveyorError('ERR_USAGE', `--timeout must be a number of seconds, got ${JSON.stringify(timeoutText)}`);
    }
    const { Store } = await import('@conveyor/lib-common/store');
    const { collectGarbage } = await import('@conveyor/lib-common/gc');
    const { formatBytes } = await import('@conveyor/lib-common/bytes');
    const { containerRoots } = await import('./roots.js');
    const { removeTree, sweepTrash } = await import('@conveyor/lib-common/overlay/mount');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const human = ctx.humanOutput;
    const total = await collectGarbage(store, {
      all: Boolean(ctx.args.all),
      buildCache: Boolean(ctx.args.all) || Boolean(ctx.args['build-cache']),
      dryRun: Boolean(ctx.args['dry-run']),
      timeoutMs: seconds * 1000,
      containerRoots: () => containerRoots(store, (message) => ctx.log.warn(message)),
      trash: { sweep: (remove) => sweepTrash(store, remove), remove: removeTree },
      onUntagged: async (record) => (human ? void ctx.print(`untagged: ${record.ref}\n`) : ctx.out.write(record)),
      onFreed: async (record) =>
        human ? void ctx.print(`deleted: ${record.kind} ${record.digest ?? record.chainID ?? record.key ?? record.path}\n`) : ctx.out.write(record),
      warn: (message) => ctx.log.warn(message),
      onWait: (pids) =>
        ctx.log.info(
          pids.length === 0 ? 'waiting for another img-prune to finish' : `waiting for ${pids.length} pull(s) or unpack(s) to finish (pid ${pids.join(', ')})`,
        ),
    });
    if (!human) await ctx.out.write(total);
    if (!ctx.args.quiet) ctx.stderr.write(`${total.dryRun ? 'Total reclaimable space' : 'Total reclaimed space'}: ${formatBytes(total.size)}\n`);
  },
});
