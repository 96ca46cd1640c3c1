import t from 'tap';
import { formatBytes } from '../src/bytes.js';

// [bytes, units, expected]
const cases: [number, 'decimal' | 'binary' | undefined, string][] = [
  [0, undefined, '0B'],
  [999, undefined, '999B'],
  [1000, undefined, '1.00kB'],
  [2_154_000, undefined, '2.15MB'],
  [31_400_000, 'decimal', '31.4MB'],
  [5e15, undefined, '5000.0TB'],
  [512, 'binary', '512B'],
  [1024, 'binary', '1KiB'],
  [512 * 1024 ** 2, 'binary', '512MiB'],
  [1.5 * 1024 ** 3, 'binary', '1.5GiB'],
  [1000, 'binary', '1000B'],
];
for (const [bytes, units, expected] of cases) {
  t.equal(formatBytes(bytes, units), expected, `${bytes} ${units ?? 'default'}`);
}
