/**
 * The layer's own errors: an entry that tries to leave the root
 * (ERR_LAYER_MALICIOUS) or that is not a valid entry (ERR_LAYER_INVALID),
 * each naming the entry (as text, cut to 300 bytes) in its details.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import { text } from './names.js';

export function malicious(message: string, name?: string): ConveyorError {
  return new ConveyorError('ERR_LAYER_MALICIOUS', message, {
    hint: 'the layer tries to write outside its root or through a symlink; refusing it',
    details: name === undefined ? undefined : { entry: text(name.slice(0, 300)) },
  });
}

export function invalid(message: string, name?: string): ConveyorError {
  return new ConveyorError('ERR_LAYER_INVALID', message, { details: name === undefined ? undefined : { entry: text(name.slice(0, 300)) } });
}
