/**
 * Restart policies (`ctr-spawn -d --restart`), Docker's: parsing the flag,
 * deciding after each end of the container whether the supervisor runs it
 * again, and how long it waits first (100 ms doubling per restart, at most a
 * minute, back to 100 ms once a run lasted 10 s: Docker's restart manager).
 * `unless-stopped` behaves as `always` here: there is no daemon whose own
 * restart the two would differ on. Pure functions.
 *
 * Failure: parseRestartPolicy throws ERR_USAGE for a policy that is not one.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { RestartPolicy } from '@conveyor/lib-common/container/state';

/** The first wait before a restart, and its cap. */
export const BACKOFF_START_MS = 100;
export const BACKOFF_MAX_MS = 60_000;
/** A run at least this long resets the backoff. */
export const BACKOFF_RESET_AFTER_MS = 10_000;

/** Parses `no`, `on-failure`, `on-failure:N`, `always`, `unless-stopped`. */
export function parseRestartPolicy(raw: string): RestartPolicy {
  const match = /^(no|on-failure|always|unless-stopped)(?::(.*))?$/.exec(raw.trim());
  if (!match) {
    throw new ConveyorError('ERR_USAGE', `invalid --restart policy ${JSON.stringify(raw)}`, { hint: 'no, on-failure[:N], always or unless-stopped' });
  }
  const name = match[1] as RestartPolicy['name'];
  if (match[2] === undefined) return { name };
  if (name !== 'on-failure') throw new ConveyorError('ERR_USAGE', `--restart ${raw}: only on-failure takes a maximum retry count`);
  if (!/^\d+$/.test(match[2]) || Number(match[2]) > 1_000_000) {
    throw new ConveyorError('ERR_USAGE', `--restart ${raw}: the maximum retry count must be a whole number`);
  }
  return { name, maximumRetryCount: Number(match[2]) };
}

export interface RunEnd {
  exitCode: number;
  /** Restarts so far. */
  restartCount: number;
  /** ctr-stop (or a stopping ctr-kill) ended it. */
  stoppedByUser: boolean;
}

/** Whether the container is to run again after `end` under `policy`. */
export function shouldRestart(policy: RestartPolicy | undefined, end: RunEnd): boolean {
  if (!policy || policy.name === 'no' || end.stoppedByUser) return false;
  if (policy.name === 'always' || policy.name === 'unless-stopped') return true;
  // A policy this module did not write (a hand-edited state.json) restarts nothing.
  if (policy.name !== 'on-failure' || end.exitCode === 0) return false;
  // on-failure:0 is Docker's "no limit".
  const max = policy.maximumRetryCount;
  return typeof max !== 'number' || max === 0 || end.restartCount < max;
}

/** The wait before the next restart: the previous one doubled, or the start value after a long enough run. */
export function nextBackoff(previousMs: number | undefined, ranMs: number): number {
  if (previousMs === undefined || ranMs >= BACKOFF_RESET_AFTER_MS) return BACKOFF_START_MS;
  return Math.min(previousMs * 2, BACKOFF_MAX_MS);
}
