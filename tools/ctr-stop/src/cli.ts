import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds ctr-stop replaces this file.
await runCli({
  name: 'ctr-stop',
  help: 'Usage: ctr-stop [OPTIONS]\n\nStop running containers: the stop signal, then SIGKILL after a timeout.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'ctr-stop is not built yet');
  },
});
