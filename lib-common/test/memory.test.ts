import t from 'tap';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { garbageCollectorEvery } from '../src/memory.js';

t.test('a young-generation collection runs once per threshold of bytes', async (t) => {
  let minor = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if ((entry as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const feed = garbageCollectorEvery(1 << 20);
  for (let i = 0; i < 48; i++) feed(64 * 1024); // 3 MiB in socket-sized chunks
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();
  t.ok(minor >= 3, `at least 3 minor collections (saw ${minor})`);
});
