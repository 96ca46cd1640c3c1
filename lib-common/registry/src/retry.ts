/**
 * Retries: the one retry loop (`retry`), the backoff it waits by, and which
 * HTTP answers and network errors are worth another attempt. Requests
 * (`retryRequest`: API calls and token fetches) and blob downloads (blob.ts,
 * which resumes where the last attempt stopped) both go round this loop; each
 * caller decides per attempt whether to go again, the loop waits, reports and
 * stops waiting when the signal aborts.
 *
 * On failure: `retry` rejects with whatever an attempt threw, or with the
 * signal's reason when it aborts during a wait; `retryRequest` resolves with
 * the last response whatever its status once the retries run out (the caller
 * maps it), and rejects with the last network error passed through `fail`.
 */
import { drain, type HttpResponse } from './transport.js';

export interface RetryPolicy {
  /** Retries after the first attempt for 429/5xx/resets (default 4). */
  retries?: number;
  /** First backoff delay in ms, doubled per retry (default 200). */
  retryDelayMs?: number;
  /** Longest single wait, also caps Retry-After (default 10 s). */
  maxRetryDelayMs?: number;
}

/** Statuses a registry (or its CDN) may answer differently a moment later. */
export const RETRY_STATUS: ReadonlySet<number> = new Set([429, 500, 502, 503, 504]);
const RETRY_ERRNO = new Set([
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ECONNABORTED',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_CONVEYOR_TIMEOUT',
  'ERR_CONVEYOR_SLOW',
  'UND_ERR_SOCKET',
]);

/** A dropped, reset, timed-out or too-slow connection: another attempt may get through. */
export function isRetryableNetworkError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && RETRY_ERRNO.has(code);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff with jitter; Retry-After (seconds or a date) wins, within the cap. */
export function backoffDelay(policy: RetryPolicy, attempt: number, retryAfter?: string | string[]): number {
  const cap = policy.maxRetryDelayMs ?? 10_000;
  const value = Array.isArray(retryAfter) ? retryAfter[0] : retryAfter;
  if (value) {
    const seconds = Number(value);
    const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
    if (Number.isFinite(ms) && ms >= 0) return Math.min(cap, Math.ceil(ms));
  }
  const base = (policy.retryDelayMs ?? 200) * 2 ** attempt;
  return Math.min(cap, Math.round(base * (0.75 + Math.random() * 0.5)));
}

/**
 * What one attempt tells the loop: its result, or go again, after `wait` ms
 * when given (none: at once), with `message` for onRetry first when given.
 */
export type Attempt<T> = { done: T } | { again: true; wait?: number; message?: string };

/** The retry loop. `attempt` gets the number of attempts made before it (0 first). */
export async function retry<T>(
  attempt: (n: number) => Promise<Attempt<T>>,
  options: { signal?: AbortSignal; onRetry?: (message: string) => void } = {},
): Promise<T> {
  for (let n = 0; ; n++) {
    const outcome = await attempt(n);
    if ('done' in outcome) return outcome.done;
    if (outcome.message !== undefined) options.onRetry?.(outcome.message);
    if (outcome.wait !== undefined) await sleep(outcome.wait, options.signal);
  }
}

export interface RetryRequestOptions {
  signal?: AbortSignal;
  onRetry?: (message: string) => void;
  /** The onRetry message for a retry after a network error or a status; none: retry silently. */
  describe?: (why: { error?: unknown; status?: number }, wait: number) => string;
  /** Turns the network error that ends the retries into the one thrown (error-map.ts's networkError). */
  fail: (error: unknown) => unknown;
}

/** `send` retried on RETRY_STATUS answers and retryable network errors, `policy.retries` times at most. */
export function retryRequest<R extends HttpResponse>(send: () => Promise<R>, policy: RetryPolicy, options: RetryRequestOptions): Promise<R> {
  const retries = policy.retries ?? 4;
  return retry<R>(async (n) => {
    let res: R;
    try {
      res = await send();
    } catch (error) {
      if (n < retries && isRetryableNetworkError(error) && !options.signal?.aborted) {
        const wait = backoffDelay(policy, n);
        return { again: true, wait, message: options.describe?.({ error }, wait) };
      }
      throw options.fail(error);
    }
    const status = res.statusCode ?? 0;
    if (RETRY_STATUS.has(status) && n < retries) {
      drain(res);
      const wait = backoffDelay(policy, n, res.headers['retry-after']);
      return { again: true, wait, message: options.describe?.({ status }, wait) };
    }
    return { done: res };
  }, options);
}
