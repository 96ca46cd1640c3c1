/** The restart policy's pure parts (supervisor/restart.ts): --restart parsing, the decision after each end, Docker's backoff. */
import t from 'tap';
import { BACKOFF_MAX_MS, BACKOFF_START_MS, nextBackoff, parseRestartPolicy, shouldRestart } from '../src/supervisor/restart.js';

t.test('parseRestartPolicy takes Docker spellings and refuses the rest', async (t) => {
  const good: [string, object][] = [
    ['no', { name: 'no' }],
    ['always', { name: 'always' }],
    ['unless-stopped', { name: 'unless-stopped' }],
    ['on-failure', { name: 'on-failure' }],
    ['on-failure:3', { name: 'on-failure', maximumRetryCount: 3 }],
    ['on-failure:0', { name: 'on-failure', maximumRetryCount: 0 }],
  ];
  for (const [raw, policy] of good) t.strictSame(parseRestartPolicy(raw), policy, raw);
  for (const bad of ['', 'yes', 'always:2', 'no:1', 'on-failure:', 'on-failure:-1', 'on-failure:1.5', 'on-failure:x', 'ALWAYS', 'on-failure:99999999']) {
    t.throws(() => parseRestartPolicy(bad), { code: 'ERR_USAGE' }, JSON.stringify(bad));
  }
});

t.test('shouldRestart: per policy, exit code, count so far and a user stop', async (t) => {
  const end = (exitCode: number, restartCount = 0, stoppedByUser = false) => ({ exitCode, restartCount, stoppedByUser });
  // [policy, end, restart?]
  const cases: [string | undefined, ReturnType<typeof end>, boolean][] = [
    [undefined, end(1), false],
    ['no', end(1), false],
    ['always', end(0), true],
    ['always', end(137, 50), true],
    ['always', end(143, 0, true), false],
    ['unless-stopped', end(0), true],
    ['unless-stopped', end(0, 0, true), false],
    ['on-failure', end(0), false],
    ['on-failure', end(1, 1000), true],
    ['on-failure:2', end(3, 0), true],
    ['on-failure:2', end(3, 1), true],
    ['on-failure:2', end(3, 2), false],
    ['on-failure:0', end(3, 5), true],
    ['on-failure:2', end(1, 0, true), false],
  ];
  t.equal(shouldRestart({ name: 'sometimes' } as never, end(1)), false, 'an unknown policy restarts nothing');
  t.equal(shouldRestart({ name: 'on-failure', maximumRetryCount: '2' } as never, end(1, 5)), true, 'a count that is not a number is no limit');
  for (const [raw, e, expected] of cases) {
    t.equal(shouldRestart(raw === undefined ? undefined : parseRestartPolicy(raw), e), expected, `${raw} after ${JSON.stringify(e)}`);
  }
});

t.test('nextBackoff doubles from 100 ms, caps at a minute and resets after 10 s of running', async (t) => {
  // [previous, ran ms, next]
  const cases: [number | undefined, number, number][] = [
    [undefined, 0, BACKOFF_START_MS],
    [100, 50, 200],
    [200, 9_999, 400],
    [400, 10_000, BACKOFF_START_MS],
    [BACKOFF_MAX_MS, 0, BACKOFF_MAX_MS],
    [40_000, 0, BACKOFF_MAX_MS],
  ];
  for (const [previous, ran, next] of cases) t.equal(nextBackoff(previous, ran), next, `${previous} after ${ran} ms`);
});
