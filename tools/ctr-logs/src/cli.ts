import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds ctr-logs replaces this file.
await runCli({
  name: 'ctr-logs',
  help: 'Usage: ctr-logs [OPTIONS]\n\nPrint the output of a detached container.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'ctr-logs is not built yet');
  },
});
