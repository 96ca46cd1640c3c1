import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds ctr-rm replaces this file.
await runCli({
  name: 'ctr-rm',
  help: 'Usage: ctr-rm [OPTIONS]\n\nRemove containers and everything they left behind.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'ctr-rm is not built yet');
  },
});
