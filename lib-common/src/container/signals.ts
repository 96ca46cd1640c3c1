/**
 * Signal forwarding: signals sent to ctr-spawn (or ctr-exec) go to the runtime process
 * (`runc run` and `runc exec` pass them on to the container's process). Before the runtime runs, a
 * signal is kept as pending: it ends the wait for a record, stops the run
 * before the runtime starts, or is delivered the moment it has started. A
 * pid 1 without handlers ignores SIGINT and SIGTERM, so the third one asks
 * for the container to be killed (onRepeatedStop).
 *
 * Failure: never throws; a signal that cannot be delivered (the runtime has
 * just exited) is dropped.
 */
import { signalExit } from './runtime.js';
import type { Subprocess } from '../subprocess.js';

export { signalExit };

/** Delivers signals sent to the tool; returns an unsubscribe function. */
export type SignalSource = (handler: (signal: NodeJS.Signals) => void) => () => void;

export class SignalForwarder {
  /** The first signal that arrived while no runtime was running. */
  pending: NodeJS.Signals | undefined;
  /** Called on the third SIGINT or SIGTERM forwarded to a running runtime. */
  onRepeatedStop: ((signal: NodeJS.Signals) => void) | undefined;
  private child: Subprocess | undefined;
  private stops = 0;
  private interrupt: ((error: Error) => void) | undefined;
  private readonly interrupted: Promise<never>;
  private readonly unsubscribe: () => void;

  /** Subscribes at once: from here on no signal is lost. */
  constructor(signals: SignalSource) {
    this.interrupted = new Promise<never>((_, reject) => (this.interrupt = reject));
    this.interrupted.catch(() => undefined);
    this.unsubscribe = signals((signal) => this.receive(signal));
  }

  private receive(signal: NodeJS.Signals): void {
    const child = this.child;
    if (child?.pid !== undefined && child.exitCode === null) {
      child.kill(signal);
      if ((signal === 'SIGINT' || signal === 'SIGTERM') && ++this.stops === 3) this.onRepeatedStop?.(signal);
    } else {
      this.pending ??= signal;
      // Still waiting for the record (a producer that never closes): stop waiting.
      this.interrupt?.(new Error(`interrupted by ${signal}`));
    }
  }

  /** `work`, unless a signal arrives first (then rejects); later signals no longer interrupt. */
  async unlessInterrupted<T>(work: Promise<T>): Promise<T> {
    const value = await Promise.race([work, this.interrupted]);
    this.interrupt = undefined;
    return value;
  }

  /** Signals go to `child` from now on; with `deliverPending`, a signal that came before it too. */
  attach(child: Subprocess, deliverPending: boolean): void {
    this.child = child;
    if (deliverPending && this.pending) child.kill(this.pending);
  }

  /** Stops listening. Called last, so a second Ctrl-C cannot kill us half-way through clean-up. */
  close(): void {
    this.unsubscribe();
  }
}
