import { flag, intFlag } from '@conveyor/lib-common/args';
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError, EXIT, toConveyorError } from '@conveyor/lib-common/errors';
import type { RepositoryRecord, TagRecord } from '@conveyor/lib-common/records';
import type { RegistryClient } from '@conveyor/registry/client';

const HELP = `Usage: img-search [OPTIONS] TERM
       img-search [OPTIONS] REGISTRY/[TERM]
       img-search [OPTIONS] --registry HOST [TERM]
       img-search [OPTIONS] --tags [REPOSITORY...]

Find repositories and tags, as NDJSON records (a table when stdout is a terminal).

  TERM                  search Docker Hub (GET /v1/search on its index), as docker search
                        does: one \`repository\` record per result
  REGISTRY/TERM         list REGISTRY's catalog (GET /v2/_catalog, every page), keeping
                        the repositories whose name contains TERM (all with an empty TERM)
  --tags REPOSITORY     list the repository's tags (GET /v2/NAME/tags/list, every page) as
                        \`tag\` records with a full \`ref\` that img-fetch pulls; with no
                        REPOSITORY, repositories are read from stdin (names, or records
                        with \`name\` such as img-search's own); other records pass through

Options:
      --tags               list tags instead of searching
      --digests            with --tags: add each tag's manifest digest, media type and platforms
      --registry HOST      search this registry's catalog (docker.io: Docker Hub)
      --limit N            at most N results (Docker Hub: default 25, at most 100; catalog
                           and tags: all)
  -f, --filter FILTER      Docker Hub results only: stars=N, is-official=true|false,
                           is-automated=true|false (repeatable)
      --index-url URL      the Docker Hub index to search (default https://index.docker.io/v1/;
                           also CONVEYOR_INDEX_URL)
      --page-size N        entries asked for per catalog or tags page (default 100)
      --no-trunc           do not cut descriptions and digests in the table
      --json               NDJSON even on a terminal
      --table              a table even when piped
      --insecure           do not verify TLS certificates (and allow plain HTTP), any registry
      --insecure-registry HOST  the same for this registry only (repeatable; also
                           CONVEYOR_INSECURE_REGISTRIES=host1,host2)
      --plain-http         talk plain HTTP to the registry
      --ca-file FILE       also trust this CA certificate (PEM)
      --log-format FORMAT  text (default) or json
  -q, --quiet              print only names (tags: references), no info messages
  -h, --help               show this help
      --version            print the version

Credentials come from $DOCKER_CONFIG/config.json as for img-fetch (img-login writes them);
a registry's catalog usually needs a token with the registry:catalog:* scope.

Examples:
  img-search nginx --limit 5 --filter is-official=true
  img-search localhost:5000/
  img-search --registry registry.example.com team/
  img-search --tags busybox | jq -c 'select(.tag|test("^1\\\\."))' | img-fetch
  img-search --tags --digests localhost:5000/app
  img-search localhost:5000/ | img-search --tags -q

Exit status: 0 listed (even nothing), 1 a registry failed (or a tag's digest could not be
looked up), 2 usage or bad input.
`;

await runCli({
  name: 'img-search',
  help: HELP,
  spec: {
    string: ['limit', 'registry', 'index-url', 'page-size', 'ca-file'],
    multiple: ['filter', 'insecure-registry'],
    boolean: ['tags', 'digests', 'trunc', 'json', 'table', 'insecure', 'plain-http'],
    alias: { f: 'filter' },
    default: { trunc: true },
  },
  main: async (ctx) => {
    const target = await import('./target.js');
    const tags = Boolean(ctx.args.tags);
    const filters = target.parseFilters(ctx.args.filter as string[]);
    const pageSize = intFlag(ctx.args, 'page-size', 100, 1, 10000);
    if (ctx.args.digests && !tags) throw new ConveyorError('ERR_USAGE', '--digests goes with --tags');
    const registryFlag = flag(ctx.args, 'registry');
    if (tags && registryFlag !== undefined) throw new ConveyorError('ERR_USAGE', '--tags takes a repository with its registry (HOST/NAME), not --registry');
    if (!tags && ctx.args._.length > 1) throw new ConveyorError('ERR_USAGE', 'give one search term', { hint: 'see --help' });
    const what = tags ? undefined : target.searchTarget(ctx.args._[0], registryFlag);
    if (what?.kind !== 'hub' && target.hasFilters(filters)) throw new ConveyorError('ERR_USAGE', '--filter applies to Docker Hub searches only');
    const limit = flag(ctx.args, 'limit') === undefined ? undefined : intFlag(ctx.args, 'limit', 25, 1, what?.kind === 'hub' ? 100 : Number.MAX_SAFE_INTEGER);
    const index = what?.kind === 'hub' ? target.indexUrl(flag(ctx.args, 'index-url') ?? ctx.env.CONVEYOR_INDEX_URL) : undefined;

    const table = Boolean(ctx.args.table) || (ctx.humanOutput && !ctx.args.json && !ctx.args.quiet);
    const collected: (RepositoryRecord | TagRecord)[] = [];
    const out = {
      write: async (record: RepositoryRecord | TagRecord) => {
        if (ctx.args.quiet) ctx.print(`${record.type === 'tag' ? record.ref : record.name}\n`);
        else if (table) collected.push(record);
        else await ctx.out.write(record);
      },
    };
    const insecureRegistries = [...(ctx.args['insecure-registry'] as string[]), ctx.env.CONVEYOR_INSECURE_REGISTRIES ?? '']
      .flatMap((s) => s.split(','))
      .map((s) => s.trim())
      .filter(Boolean);
    // An http:// index is the user's own choice of plain HTTP for that host.
    if (index?.protocol === 'http:') insecureRegistries.push(index.host);
    const { RegistryClient } = await import('@conveyor/registry/client');
    const { lookupCredentials } = await import('@conveyor/registry/credentials');
    const client: RegistryClient = new RegistryClient({
      insecure: Boolean(ctx.args.insecure),
      insecureRegistries,
      plainHttp: Boolean(ctx.args['plain-http']),
      caFile: flag(ctx.args, 'ca-file'),
      sslCertFile: ctx.env.SSL_CERT_FILE || undefined,
      // The index is searched anonymously, as docker search does.
      credentials: (registry) => (registry === index?.host ? Promise.resolve(undefined) : lookupCredentials(registry, { env: ctx.env })),
      userAgent: 'conveyor-img-search',
      onRetry: (message) => ctx.log.info(message),
    });
    const warn = (message: string) => ctx.log.warn(message);
    const search = await import('./search.js');
    let code: number = EXIT.OK;
    try {
      if (what?.kind === 'hub') await search.searchHub(client, index!, what.term, filters, { out, limit, warn });
      else if (what?.kind === 'catalog') await search.searchCatalog(client, what.registry, what.term, { out, limit, pageSize, warn });
      else {
        const options = { out, limit, pageSize, warn, digests: Boolean(ctx.args.digests), error: (e: ConveyorError) => ctx.log.error(e) };
        const listOne = async (repo: { registry: string; repository: string }) => {
          try {
            if ((await search.listTagRecords(client, repo, options)) > 0 && code === EXIT.OK) code = EXIT.FAILED;
          } catch (error) {
            // Each repository is tried; the first failure's exit code is the run's.
            const err = toConveyorError(error);
            ctx.log.error(err);
            if (code === EXIT.OK) code = err.exitCode;
          }
        };
        if (ctx.args._.length > 0) {
          const repos = ctx.args._.map((text) => target.tagsRepository(text));
          for (const repo of repos) await listOne(repo);
        } else {
          if (ctx.stdin.isTTY) throw new ConveyorError('ERR_USAGE', 'no repository given', { hint: 'img-search --tags busybox, or pipe repositories in' });
          const { readRepositories } = await import('./input.js');
          for await (const item of readRepositories(ctx.stdin)) {
            if (item.kind === 'passthrough') await ctx.out.write(item.record);
            else await listOne(item.repo);
          }
        }
      }
    } finally {
      client.close();
      if (table && collected.length > 0) {
        const { repositoryTable, tagTable } = await import('./table.js');
        const truncate = ctx.args.trunc !== false;
        const repositories = collected.filter((r): r is RepositoryRecord => r.type === 'repository');
        const tagRecords = collected.filter((r): r is TagRecord => r.type === 'tag');
        if (repositories.length > 0) ctx.print(repositoryTable(repositories, truncate));
        if (tagRecords.length > 0) ctx.print(tagTable(tagRecords, truncate));
      }
    }
    return code;
  },
});
