/**
 * The stdin and terminal of a container's process (ctr-spawn's container,
 * ctr-exec's command). Without -i or -t it is /dev/null. With
 * them it is our stdin, unless our stdin carries the record (or is not a
 * terminal while -t needs one: runc's foreground terminal mode reads its own
 * stdin as the terminal): then /dev/tty is reopened for the container.
 *
 * Failure: ERR_USAGE when a terminal is needed and /dev/tty cannot be opened.
 * Nothing is left open on failure; after success the caller closes().
 */
import { closeSync, openSync } from 'node:fs';
import { ConveyorError } from '../errors.js';

export interface ContainerStdin {
  /** What the runtime gets as stdin: an fd, or nothing. */
  fd: number | 'ignore';
  /** The runtime reads a terminal: it must stay in our session (terminal signals, job control). */
  usesTerminal: boolean;
  /** Closes the reopened /dev/tty, if any. */
  close(): void;
}

export interface StdinContext {
  /** Our stdin as an fd. */
  stdin: number;
  /** Our stdin carries the record, so it cannot also be the container's (ctr-spawn; never for ctr-exec). */
  inputIsStdin: boolean;
  stdinIsTTY: boolean;
}

export function containerStdin(options: { interactive: boolean; tty: boolean }, ours: StdinContext): ContainerStdin {
  if (!options.interactive && !options.tty) return { fd: 'ignore', usesTerminal: false, close: () => undefined };
  const stdinUsable = !ours.inputIsStdin && (ours.stdinIsTTY || !options.tty);
  if (stdinUsable) return { fd: ours.stdin, usesTerminal: ours.stdinIsTTY, close: () => undefined };
  let ttyFd: number;
  try {
    ttyFd = openSync('/dev/tty', 'r+');
  } catch {
    throw new ConveyorError('ERR_USAGE', `${options.tty ? '-t' : '-i'} needs a terminal: /dev/tty cannot be opened`, {
      hint: options.tty ? 'drop -t, or run from a terminal' : 'pass the record with --record FILE so stdin goes to the container',
    });
  }
  let open = true;
  return {
    fd: ttyFd,
    usesTerminal: true,
    close: () => {
      if (open) closeSync(ttyFd);
      open = false;
    },
  };
}
