/**
 * An opt-in phase trace of a run (CONVEYOR_TRACE=1), to see where the time
 * of a `ctr-spawn < rootfs` goes: one line on stderr per phase,
 *
 *   ctr-spawn: trace  T ms PHASE[ D ms]
 *
 * T the milliseconds since the process started (Node's time origin, so Node's
 * own start-up is in it), D the phase's own duration when it is a span (a
 * step that may run beside others: the overlay mount and the network, the
 * clean-up steps), absent for a mark (a point the run passed). PHASE is
 * lower-case words joined by `-`. Lines come in the order phases end.
 *
 * Failure: none; a trace that cannot be written is lost, the run goes on.
 */

export interface Trace {
  /** Records that the run passed `phase` now (or at `atMs`, for a moment already past: Node's own start-up). */
  mark(phase: string, atMs?: number): void;
  /** Waits for `work` and records `phase` with its duration when it settles (failed or not). */
  span<T>(phase: string, work: Promise<T>): Promise<T>;
  /** Runs synchronous `work` and records `phase` with its duration (thrown or not). */
  spanSync<T>(phase: string, work: () => T): T;
}

/** The trace of a run that is not traced: it costs a call. */
export const NO_TRACE: Trace = {
  mark: () => undefined,
  span: (_phase, work) => work,
  spanSync: (_phase, work) => work(),
};

/** The text of one trace line (without the newline). */
export function traceLine(tool: string, atMs: number, phase: string, durationMs?: number): string {
  const at = atMs.toFixed(1).padStart(7);
  return `${tool}: trace ${at} ms ${phase}${durationMs === undefined ? '' : ` ${durationMs.toFixed(1)} ms`}`;
}

/** A trace that writes each line with `write`, timed by `now` (ms since the process started: performance.now). */
export function createTrace(tool: string, write: (line: string) => void, now: () => number = () => performance.now()): Trace {
  const emit = (phase: string, duration?: number, at = now()) => {
    try {
      write(`${traceLine(tool, at, phase, duration)}\n`);
    } catch {
      // stderr is gone: the trace with it
    }
  };
  return {
    mark: (phase, atMs) => emit(phase, undefined, atMs),
    span: async (phase, work) => {
      const started = now();
      try {
        return await work;
      } finally {
        emit(phase, now() - started);
      }
    },
    spanSync: (phase, work) => {
      const started = now();
      try {
        return work();
      } finally {
        emit(phase, now() - started);
      }
    },
  };
}
