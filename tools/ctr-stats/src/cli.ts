import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';

// Scaffold: the issue that adds ctr-stats replaces this file.
await runCli({
  name: 'ctr-stats',
  help: 'Usage: ctr-stats [OPTIONS]\n\nStream container CPU, memory, pids and I/O usage as NDJSON.\n',
  main: async () => {
    throw new ConveyorError('ERR_INTERNAL', 'ctr-stats is not built yet');
  },
});
