import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-logout [OPTIONS] [REGISTRY]

Remove the credentials stored for a registry, as docker logout does: from the
credential helper config.json names for it (\`credHelpers\`, else
\`credsStore\`: \`docker-credential-NAME erase\`) and from the \`auths\` entries
of $DOCKER_CONFIG/config.json (default ~/.docker/config.json) that name it;
every other key of the file is kept. REGISTRY defaults to Docker Hub.
Not being logged in is not an error.

Options:
      --log-format FORMAT  text (default) or json
  -q, --quiet              no info messages
  -h, --help               show this help
      --version            print the version

Examples:
  img-logout localhost:5000
  img-logout                      # Docker Hub
  DOCKER_CONFIG=/tmp/ci-docker img-logout registry.example.com

Exit status: 0 logged out (or was not logged in), 1 config.json or the helper
failed, 2 usage.
`;

await runCli({
  name: 'img-logout',
  help: HELP,
  main: async (ctx) => {
    if (ctx.args._.length > 1) throw new ConveyorError('ERR_USAGE', 'give one registry', { hint: 'see --help' });
    const { eraseCredentials, serverRegistry } = await import('@conveyor/registry/credentials');
    const registry = serverRegistry(ctx.args._[0]);
    const { removed, from } = await eraseCredentials(registry, { env: ctx.env });
    ctx.log.info(removed ? `removed the login credentials for ${registry} from ${from.join(' and ')}` : `not logged in to ${registry}`);
  },
});
