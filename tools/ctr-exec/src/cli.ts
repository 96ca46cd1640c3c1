import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds ctr-exec replaces this file.
await runCli({
  name: 'ctr-exec',
  help: 'Usage: ctr-exec [OPTIONS]\n\nRun a command in a running container.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'ctr-exec is not built yet');
  },
});
