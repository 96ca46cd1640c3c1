// Placeholder until the builder lands (issue 12); replaced by the real command.
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

const HELP = `Usage: img-build [OPTIONS] CONTEXT

Build an image from a Dockerfile.
`;

await runCli({
  name: 'img-build',
  help: HELP,
  main: async () => {
    throw new ConveyorError('ERR_USAGE', 'img-build is not built yet');
  },
});
