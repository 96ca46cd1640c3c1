import { flag } from '@conveyor/lib-common/args';
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-login [OPTIONS] [REGISTRY]

Log in to a registry as docker login does: check the credentials against the
registry (GET /v2/ with them), then store them in $DOCKER_CONFIG/config.json
(default ~/.docker/config.json) under \`auths\`, or in the credential helper
config.json names (\`credHelpers\` for the registry, else \`credsStore\`).
img-fetch, img-search and docker itself then use them. REGISTRY defaults to
Docker Hub (docker.io); \`https://host/v2/\` and \`host:port\` are accepted.

The password comes from stdin with --password-stdin (for scripts), or is
asked for without echo when stdin is a terminal.

Options:
  -u, --username USER      user name (asked for on a terminal when absent)
      --password-stdin     read the password (or token) from stdin
  -p, --password PASSWORD  the password on the command line: insecure (other
                           users see it in the process list); prefer --password-stdin
      --insecure           do not verify TLS certificates (and allow plain HTTP)
      --insecure-registry HOST  the same for this registry only (repeatable)
      --plain-http         talk plain HTTP to the registry
      --ca-file FILE       also trust this CA certificate (PEM)
      --log-format FORMAT  text (default) or json
  -q, --quiet              no info messages
  -h, --help               show this help
      --version            print the version

Examples:
  img-login localhost:5000
  echo "$REGISTRY_TOKEN" | img-login -u ci --password-stdin registry.example.com
  img-login -u alice --password-stdin < ~/.secrets/hub-token
  DOCKER_CONFIG=/tmp/ci-docker img-login -u bot --password-stdin ghcr.io < token

Exit status: 0 logged in, 1 refused or the registry could not be reached
(nothing stored), 2 usage.
`;

await runCli({
  name: 'img-login',
  help: HELP,
  spec: {
    string: ['username', 'password', 'ca-file'],
    multiple: ['insecure-registry'],
    boolean: ['password-stdin', 'insecure', 'plain-http'],
    alias: { u: 'username', p: 'password' },
  },
  main: async (ctx) => {
    if (ctx.args._.length > 1) throw new ConveyorError('ERR_USAGE', 'give one registry', { hint: 'see --help' });
    const { serverRegistry, storeCredentials } = await import('@conveyor/registry/credentials');
    const registry = serverRegistry(ctx.args._[0]);
    let username = flag(ctx.args, 'username');
    let password = flag(ctx.args, 'password');
    const fromStdin = Boolean(ctx.args['password-stdin']);
    if (password !== undefined && fromStdin) throw new ConveyorError('ERR_USAGE', '--password and --password-stdin cannot go together');
    if (password !== undefined) ctx.log.warn('using --password on the command line is insecure (other users see it in the process list); use --password-stdin');
    if (fromStdin && username === undefined)
      throw new ConveyorError('ERR_USAGE', '--password-stdin needs --username', { hint: 'img-login -u USER --password-stdin REGISTRY' });
    const terminal = Boolean(ctx.stdin.isTTY);
    if (username === undefined || (password === undefined && !fromStdin)) {
      if (!terminal) {
        throw new ConveyorError('ERR_USAGE', 'cannot ask for credentials: stdin is not a terminal', {
          hint: 'pass --username and --password-stdin with the password on stdin',
        });
      }
      const { promptLine } = await import('./prompt.js');
      username ??= await promptLine(ctx.stdin, ctx.stderr, 'Username: ', true);
      password ??= await promptLine(ctx.stdin, ctx.stderr, 'Password: ', false);
    } else if (fromStdin) {
      const { readPassword } = await import('./login.js');
      password = await readPassword(ctx.stdin);
    }
    if (username === undefined || username === '') throw new ConveyorError('ERR_USAGE', 'no user name given');
    if (password === undefined || password === '') throw new ConveyorError('ERR_USAGE', 'no password given');

    const { RegistryClient } = await import('@conveyor/registry/client');
    const given = { username, password, source: 'the credentials given' };
    // Whether the registry ever asked for them: one open to anyone accepts any password.
    let askedFor = false;
    const client = new RegistryClient({
      insecure: Boolean(ctx.args.insecure),
      insecureRegistries: ctx.args['insecure-registry'] as string[],
      plainHttp: Boolean(ctx.args['plain-http']),
      caFile: flag(ctx.args, 'ca-file'),
      sslCertFile: ctx.env.SSL_CERT_FILE || undefined,
      credentials: async (asked) => {
        if (asked !== registry) return undefined;
        askedFor = true;
        return given;
      },
      userAgent: 'conveyor-img-login',
      onRetry: (message) => ctx.log.info(message),
    });
    const { verifyLogin } = await import('./login.js');
    try {
      await verifyLogin(client, registry, username);
    } finally {
      client.close();
    }
    if (!askedFor)
      ctx.log.warn(`${registry} did not ask for credentials (it lets anyone in), so they could not be checked; storing them anyway, as docker login does`);
    const where = await storeCredentials(registry, { username, password }, { env: ctx.env });
    ctx.log.info(`login succeeded: ${username} at ${registry}, stored in ${where}`);
  },
});
