import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds ctr-kill replaces this file.
await runCli({
  name: 'ctr-kill',
  help: 'Usage: ctr-kill [OPTIONS]\n\nSend a signal to running containers.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'ctr-kill is not built yet');
  },
});
