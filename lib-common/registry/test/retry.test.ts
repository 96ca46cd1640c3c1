/**
 * retry.ts without a network: the backoff (exponential with jitter, capped,
 * Retry-After within the cap), the one retry loop (waits, reports, stops on
 * abort) and retryRequest's decisions (which statuses and errors go again,
 * when the retries run out).
 */
import t from 'tap';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { RegistryClient } from '../src/client.js';
import { backoffDelay, retry, retryRequest, type Attempt } from '../src/retry.js';

t.test('backoff: exponential, capped, Retry-After wins', async (t) => {
  const client = new RegistryClient({ retryDelayMs: 100, maxRetryDelayMs: 1000 });
  const policy = client.retryPolicy;
  for (let attempt = 0; attempt < 3; attempt++) {
    const ms = backoffDelay(policy, attempt);
    t.ok(ms >= 75 * 2 ** attempt && ms <= 125 * 2 ** attempt, `attempt ${attempt}: ${ms}`);
  }
  t.equal(backoffDelay(policy, 10), 1000, 'capped');
  t.equal(backoffDelay(policy, 0, '0'), 0);
  t.equal(backoffDelay(policy, 0, '0.5'), 500);
  t.equal(backoffDelay(policy, 0, '3600'), 1000, 'Retry-After is capped too');
  t.equal(backoffDelay(policy, 0, ['0.2', '9']), 200, 'the first Retry-After header counts');
  client.close();
});

t.test('retry: goes again until done, reporting each message once', async (t) => {
  const messages: string[] = [];
  const seen: number[] = [];
  const outcomes: Attempt<string>[] = [{ again: true, wait: 1, message: 'one' }, { again: true }, { again: true, wait: 0, message: 'three' }, { done: 'ok' }];
  const value = await retry(
    async (n) => {
      seen.push(n);
      return outcomes[n];
    },
    { onRetry: (m) => messages.push(m) },
  );
  t.equal(value, 'ok');
  t.strictSame(seen, [0, 1, 2, 3]);
  t.strictSame(messages, ['one', 'three']);
});

t.test('retry: an attempt that throws ends the loop; an abort ends a wait', async (t) => {
  let calls = 0;
  await t.rejects(
    retry(async () => {
      calls++;
      throw new Error('boom');
    }),
    { message: 'boom' },
  );
  t.equal(calls, 1);
  const abort = new AbortController();
  const pending = retry(async () => ({ again: true, wait: 60_000 }), { signal: abort.signal });
  abort.abort(new Error('stopped'));
  await t.rejects(pending, { message: 'stopped' });
});

function response(status: number, headers: Record<string, string> = {}): IncomingMessage {
  const res = new PassThrough() as unknown as IncomingMessage;
  res.statusCode = status;
  res.headers = headers;
  (res as unknown as PassThrough).end();
  return res;
}

function networkError(code: string): Error {
  return Object.assign(new Error(code), { code });
}

t.test('retryRequest: which answers and errors go again', async (t) => {
  // [name, what each attempt gives, retries, expected status or error code, attempts made]
  const cases: [string, (number | Error)[], number, number | string, number][] = [
    ['200 at once', [200], 4, 200, 1],
    ['503 then 200', [503, 200], 4, 200, 2],
    ['429, 500, 502, 504 then 200', [429, 500, 502, 504, 200], 4, 200, 5],
    ['503 past the retries is returned', [503, 503, 503], 2, 503, 3],
    ['404 is not retried', [404, 200], 4, 404, 1],
    ['401 is not retried', [401, 200], 4, 401, 1],
    ['reset then 200', [networkError('ECONNRESET'), 200], 4, 200, 2],
    ['too slow then 200', [networkError('ERR_CONVEYOR_SLOW'), 200], 4, 200, 2],
    ['reset past the retries fails', [networkError('ECONNRESET'), networkError('ECONNRESET')], 1, 'mapped ECONNRESET', 2],
    ['a refused connection is not retried', [networkError('ECONNREFUSED'), 200], 4, 'mapped ECONNREFUSED', 1],
    ['retries: 0 makes one attempt', [503, 200], 0, 503, 1],
  ];
  for (const [name, script, retries, expected, attempts] of cases) {
    let made = 0;
    const messages: string[] = [];
    const send = async () => {
      const next = script[made++];
      if (next instanceof Error) throw next;
      return response(next, { 'retry-after': '0' });
    };
    const result = retryRequest(
      send,
      { retries, retryDelayMs: 1 },
      {
        onRetry: (m) => messages.push(m),
        describe: ({ error, status }, wait) => `${status ?? (error as Error).message} in ${wait}`,
        fail: (error) => new Error(`mapped ${(error as Error).message}`),
      },
    );
    if (typeof expected === 'string') await t.rejects(result, { message: expected }, name);
    else t.equal((await result).statusCode, expected, name);
    t.equal(made, attempts, `${name}: attempts`);
    t.equal(messages.length, attempts - 1, `${name}: one message per retry`);
  }
});
