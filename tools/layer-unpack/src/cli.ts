// Placeholder until the tool lands; replaced by its real command-line entry point.
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError } from '@conveyor/lib-common/errors';
await runCli({ name: 'layer-unpack', help: 'Usage: layer-unpack', main: async () => { throw new ConveyorError('ERR_INTERNAL', 'not built yet'); } });
