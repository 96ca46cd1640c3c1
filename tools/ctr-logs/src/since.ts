/**
 * `--since` as ctr-logs (and docker logs) takes it: an RFC 3339 time
 * (`2026-11-29T21:00:00Z`, a date alone is midnight UTC), Unix seconds
 * (`1764450000`, fractions allowed), or a duration before now in Go's
 * notation (`10m`, `1h30m`, `45s`, `500ms`). Pure.
 *
 * Failure: ERR_USAGE naming the value.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:\d{2})?)?$/;

/** Milliseconds of a Go-style duration (`1h30m`). */
export function parseDuration(text: string): number | undefined {
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, number, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(number) * UNIT_MS[unit];
  return total;
}

/** The instant (ms since the epoch) `text` names; `now` for durations. */
export function parseSince(text: string, now: number): number {
  const value = text.trim();
  const duration = parseDuration(value);
  if (duration !== undefined) return now - duration;
  if (/^\d+(?:\.\d+)?$/.test(value)) return Number(value) * 1000;
  if (RFC3339.test(value)) {
    // A time without a zone is UTC, as docker logs reads it.
    const zoned = /[Zz]$|[+-]\d{2}:\d{2}$/.test(value) || !value.includes(':') ? value : `${value}Z`;
    const ms = Date.parse(zoned.replace(' ', 'T'));
    if (!Number.isNaN(ms)) return ms;
  }
  throw new ConveyorError('ERR_USAGE', `--since: not a time or duration: ${JSON.stringify(text)}`, {
    hint: 'an RFC 3339 time (2026-11-29T21:00:00Z), Unix seconds, or a duration such as 10m or 1h30m',
  });
}
