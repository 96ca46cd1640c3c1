/** liveLeases (lease.ts): a taker's staging directory, `.<name>.<token>` as lock.ts makes it, stays while its owner lives. */
import t from 'tap';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { leasesDir, liveLeases } from '../src/lease.js';
import { startTime } from '../src/lock.js';
import { Store } from '../src/store.js';

t.test('a live taker keeps its staging directory; a dead one loses it', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'conveyor-lease-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const store = new Store(root);
  const dir = leasesDir(store);
  // [staging dir name, kept?]
  const cases: [string, boolean][] = [
    [`.0123456789abcdef.${process.pid}.${startTime('self')}.a1b2c3d4`, true],
    ['.fedcba9876543210.999999999.12345.a1b2c3d4', false],
    ['.00112233aabbccdd.not-a-token', false],
  ];
  for (const [name] of cases) mkdirSync(join(dir, name), { recursive: true });
  t.strictSame(await liveLeases(store), [], 'a staging directory is no lease yet');
  for (const [name, kept] of cases) t.equal(existsSync(join(dir, name)), kept, `${name}: ${kept ? 'kept' : 'removed'}`);
});
