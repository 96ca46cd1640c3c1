import { runCli } from '@conveyor/lib-common/cli';
import { storeUsesUserNamespace } from '@conveyor/lib-common/paths';
import { ConveyorError, EXIT, toConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-rm [OPTIONS] IMAGE...
       ... | img-rm [OPTIONS]

Remove image references from the local store, as docker rmi untags them.
Prints an \`untagged\` record per reference removed and a \`deleted\` record
per image left with no reference. Blobs and unpacked layers stay in the store
until img-prune frees them (or --prune, at once).

An IMAGE is a reference (\`busybox\`, \`localhost:5000/app:v2\`), a manifest
digest (\`sha256:<64 hex>\`: every reference to that image), or an image ID
prefix of at least 4 hex digits. With no IMAGE, stdin is read: \`image\`
records (as img-ls prints them: the reference is removed only while it still
points at the record's digest), or one IMAGE per line; other records pass
through unchanged.

Removing the last reference of an image a container (running or stopped) was
made from is refused unless -f; the container keeps its layers either way.

Options:
  -f, --force              remove the reference even when a container uses the image
      --prune              then collect garbage as img-prune does (all dangling content,
                           not only these images'), printing its \`freed\` and \`total\` records
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --log-format FORMAT  text (default) or json (one object per line with a stable code)
  -q, --quiet              no total line on stderr with --prune
  -h, --help               show this help
      --version            print the version

Examples:
  img-rm busybox
  img-rm sha256:91bd47101e7440fa269bec12bf69b97875226b0945b8b2d5c5cf4bda58f6bef6
  img-ls | jq -c 'select(.size > 1e8)' | img-rm
  img-ls 'localhost:5000/*' | img-rm --prune

Exit status: 0 every image removed, 1 one could not be (not found, in use; the
others still were), 2 usage or bad input (the first failure's code wins).
`;

await runCli({
  name: 'img-rm',
  help: HELP,
  // A user's store unpacked through its user namespace holds files of subordinate ids: removed from inside it.
  userNamespace: (_args, root) => storeUsesUserNamespace(root),
  spec: { boolean: ['force', 'prune'], alias: { f: 'force' } },
  main: async (ctx) => {
    if (ctx.args._.length === 0 && ctx.stdin.isTTY) {
      throw new ConveyorError('ERR_USAGE', 'no image given', { hint: 'name an image (img-rm busybox) or pipe image records in; see --help' });
    }
    const { Store } = await import('@conveyor/lib-common/store');
    const { parseTarget, readTargets } = await import('./targets.js');
    const { removeTarget } = await import('./remove.js');
    const { containerUses } = await import('./containers.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const human = ctx.humanOutput;
    const warn = (message: string) => ctx.log.warn(message);
    const write = async (record: { type: string; ref?: string; digest?: string }) => {
      if (!human) return ctx.out.write(record);
      ctx.print(record.type === 'untagged' ? `Untagged: ${record.ref}\n` : `Deleted: ${record.digest}\n`);
    };
    let exitCode: number = EXIT.OK;
    const fail = (error: unknown) => {
      const err = toConveyorError(error);
      ctx.log.error(err);
      if (exitCode === EXIT.OK) exitCode = err.exitCode;
    };
    const options = { store, force: Boolean(ctx.args.force), containers: () => containerUses(store, warn), write };
    const items =
      ctx.args._.length > 0
        ? ctx.args._.map((text, i) => {
            try {
              return { kind: 'target' as const, target: parseTarget(String(text), `argument ${i + 1}`) };
            } catch (error) {
              return { kind: 'invalid' as const, error: toConveyorError(error) };
            }
          })
        : readTargets(ctx.stdin);
    for await (const item of items) {
      if (item.kind === 'passthrough') await ctx.out.write(item.record);
      else if (item.kind === 'invalid') fail(item.error);
      else await removeTarget(item.target, options).catch(fail);
    }
    if (ctx.args.prune) {
      const { collectGarbage } = await import('@conveyor/lib-common/gc');
      const { formatBytes } = await import('@conveyor/lib-common/bytes');
      const total = await collectGarbage(store, {
        containerRoots: async () => {
          const uses = await containerUses(store, warn);
          return { images: uses.flatMap((u) => (u.image ? [u.image] : [])), refs: uses.flatMap((u) => (!u.image && u.ref ? [u.ref] : [])) };
        },
        onFreed: async (record) =>
          human ? void ctx.print(`Deleted: ${record.kind} ${record.digest ?? record.chainID ?? record.path}\n`) : ctx.out.write(record),
        warn,
        onWait: () => ctx.log.info('waiting for pulls, unpacks or another prune to finish'),
      });
      if (!human) await ctx.out.write(total);
      if (!ctx.args.quiet) ctx.stderr.write(`Total reclaimed space: ${formatBytes(total.size)}\n`);
    }
    return exitCode;
  },
});
