/**
 * img-push's flag values that need more than args.ts gives: registry host
 * lists (repeatable flags and comma-separated environment variables, as
 * img-fetch takes them) and the transfer-rate limits. Pure functions; a bad
 * value is ERR_USAGE.
 */
import { parseBytes } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';

/** Registry hosts from repeatable flag values and comma-separated lists; a scheme and trailing slashes are dropped. */
export function parseHostList(values: string[]): string[] {
  return values
    .flatMap((v) => v.split(','))
    .map((v) =>
      v
        .trim()
        .replace(/^https?:\/\//, '')
        .replace(/\/+$/, ''),
    )
    .filter((v) => v !== '');
}

/** --min-rate and --rate-window (or their environment variables); undefined keeps the client's default. */
export function transferLimits(minRate: string | undefined, window: string | undefined): { minRate?: number; rateWindowMs?: number } {
  const rate = minRate === undefined || minRate === '' ? undefined : parseBytes(minRate.replace(/\/s$/, ''), '--min-rate');
  let rateWindowMs: number | undefined;
  if (window !== undefined && window !== '') {
    const seconds = Number(window);
    if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 3600)
      throw new ConveyorError('ERR_USAGE', `--rate-window must be a number of seconds from 0.1 to 3600, got ${JSON.stringify(window)}`);
    rateWindowMs = Math.round(seconds * 1000);
  }
  return { minRate: rate, rateWindowMs };
}
