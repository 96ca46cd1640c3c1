/**
 * Asking on a terminal: a line with echo (the user name) or without (the
 * password: the terminal is put in raw mode so nothing typed is shown, and
 * restored afterwards whatever happens). Library code: the terminal's
 * streams are passed in.
 *
 * On failure: Ctrl-C or the end of input before a line is ERR_USAGE
 * ("interrupted"); the terminal is restored first.
 */
import type { Writable } from 'node:stream';
import { ConveyorError } from '@conveyor/lib-common/errors';

export interface Terminal extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
}

/** Writes `question` to `output` and reads one line from `input`, echoed only when `echo`. */
export function promptLine(input: Terminal, output: Writable, question: string, echo: boolean): Promise<string> {
  const raw = typeof input.setRawMode === 'function';
  // Raw before the question shows: what is typed once it is on the screen is never echoed.
  raw && input.setRawMode!(true);
  output.write(question);
  input.resume();
  return new Promise((resolve, reject) => {
    let line = '';
    const finish = (error?: ConveyorError) => {
      input.off('data', onData);
      input.off('end', onEnd);
      raw && input.setRawMode!(false);
      input.pause();
      output.write('\n');
      if (error) reject(error);
      else resolve(line);
    };
    const onEnd = () => finish(line === '' ? new ConveyorError('ERR_USAGE', 'interrupted: no input') : undefined);
    const onData = (chunk: Buffer | string) => {
      for (const char of chunk.toString()) {
        if (char === '\r' || char === '\n') return finish();
        if (char === '\u0003') return finish(new ConveyorError('ERR_USAGE', 'interrupted'));
        if (char === '\u0004') return onEnd();
        if (char === '\u007f' || char === '\b') {
          if (line.length > 0) {
            line = line.slice(0, -1);
            if (echo && raw) output.write('\b \b');
          }
          continue;
        }
        line += char;
        if (echo && raw) output.write(char);
      }
    };
    input.on('data', onData);
    input.on('end', onEnd);
  });
}
