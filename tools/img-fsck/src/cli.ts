import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-fsck [OPTIONS]

Check the local store and, with --repair, remove what is corrupt or left
over, so the next pull or unpack fetches or redoes it. Checked: index.json
and every entry (a descriptor of a manifest that is present and parses, of
its media type); every manifest's config (parses, one diff ID per layer) and
layers (present); the child manifests of an index that are present; every
blob under blobs/sha256, rehashed (size and digest); every unpacked layer
(meta.json, its chain ID following from its parent and diff ID, and the tree
checksum layer-unpack recorded: a file changed, added, removed, chmod'ed or
chown'ed since shows); containers recorded running whose process is gone;
and what img-prune would collect: blobs and unpacked layers nothing needs,
partial downloads, staging directories and temporary files of dead writers,
dangling short links, invalid build-cache entries.

Prints one \`problem\` record per problem (a stable FSCK_* code, the path under
the store, a message, whether it was repaired), then an \`fsck\` summary
record. Nothing is followed out of the store (symlinks are reported, never
read through), and memory stays flat whatever a blob's size.

Waits for pulls, unpacks, builds and imports in flight to finish (as
img-prune does) and holds new ones back while it runs.

--repair: a corrupt blob is removed, and the index.json entries that need it
(or a missing blob) are dropped, their names kept in the records (pull them
again); a corrupt or incomplete layer directory is removed (not one a mounted
overlay uses); a broken index.json is rewritten with the entries that can be
read from it (the old one kept as index.json.broken); orphans and leftovers
are removed; a container whose process is gone is recorded as exited.

Options:
      --repair             remove what is corrupt or left over (see above)
      --no-layers          skip recomputing unpacked layers' tree checksums (faster;
                           meta.json and chain IDs are still checked)
      --layers             recompute them (the default)
      --timeout SECONDS    give up waiting for writers in flight (default 600)
      --root DIR           store root (default: $CONVEYOR_ROOT, /var/lib/conveyor as root)
      --progress MODE      auto, json, bar or none (stderr): hashing of large blobs
      --log-format FORMAT  text (default) or json (one object per line with a stable code)
  -q, --quiet              no summary or info lines on stderr
  -h, --help               show this help
      --version            print the version

Examples:
  img-fsck
  img-fsck --repair
  img-fsck | jq -r 'select(.type == "problem") | [.code, .path] | @tsv'
  img-fsck --repair | jq -r 'select(.type == "problem" and .refs) | .refs[]' | sort -u | xargs -r -n1 img-fetch
  img-fsck --no-layers --root /srv/conveyor || echo "store needs attention"

Exit status: 0 the store is clean (or everything found was repaired),
1 problems remain (or the store could not be checked), 2 usage.
`;

await runCli({
  name: 'img-fsck',
  help: HELP,
  // Rootless: in the store's user namespace, as layer-unpack, so the owners its tree checksums hashed are the ones seen.
  userNamespace: true,
  spec: { boolean: ['repair', 'layers'], string: ['timeout'], default: { layers: true } },
  main: async (ctx) => {
    if (ctx.args._.length > 0)
      throw new ConveyorError('ERR_USAGE', `img-fsck takes no arguments, got ${JSON.stringify(ctx.args._[0])}`, { hint: 'see --help' });
    const timeoutText = ctx.args.timeout as string | undefined;
    const seconds = timeoutText === undefined ? 600 : Number(timeoutText);
    if (!Number.isFinite(seconds) || seconds < 0 || timeoutText === '') {
      throw new ConveyorError('ERR_USAGE', `--timeout must be a number of seconds, got ${JSON.stringify(timeoutText)}`);
    }
    const { Store } = await import('@conveyor/lib-common/store');
    const { fsck } = await import('./fsck.js');
    const { Report } = await import('./problems.js');
    const { problemLine, summaryLine } = await import('./human.js');
    const store = new Store(ctx.root, { warn: (message) => ctx.log.warn(message) });
    const human = ctx.humanOutput;
    const repair = Boolean(ctx.args.repair);
    const report = new Report(ctx.root, repair, async (record) => {
      if (human) ctx.print(problemLine(record));
      else await ctx.out.write(record);
    });
    const summary = await fsck(store, report, {
      trees: ctx.args.layers !== false,
      timeoutMs: seconds * 1000,
      info: (message) => {
        if (!ctx.args.quiet) ctx.log.info(message);
      },
      warn: (message) => ctx.log.warn(message),
      onWait: (pids) =>
        ctx.log.info(
          pids.length === 0
            ? 'waiting for img-prune (or another img-fsck) to finish'
            : `waiting for ${pids.length} store writer(s) to finish (pid ${pids.join(', ')})`,
        ),
      progress: {
        start: (hex, size) => ctx.progress.start({ id: hex.slice(0, 12), action: 'Verifying', current: 0, total: size }),
        bytes: (hex, done, size) => ctx.progress.update({ id: hex.slice(0, 12), action: 'Verifying', current: done, total: size }),
        done: (hex, size) => ctx.progress.done({ id: hex.slice(0, 12), action: 'Verified', current: size, total: size }),
      },
    });
    ctx.progress.finish();
    if (human) ctx.print(summaryLine(summary));
    else await ctx.out.write(summary);
    if (!human && !ctx.args.quiet) ctx.stderr.write(summaryLine(summary));
    return report.unclean ? 1 : 0;
  },
});
