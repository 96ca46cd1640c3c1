/**
 * Sizes for people, the one byte formatter of the tools (progress lines,
 * img-ls's SIZE column, ctr-spawn's messages about limits).
 */

/**
 * `decimal` (kB, MB: powers of 1000, two or one decimals) is what `docker
 * images` prints as SIZE; `binary` (KiB, MiB: powers of 1024, whole when
 * exact, else one decimal) fits limits given in the powers of 1024 that
 * args.ts's parseBytes reads (`--memory 512m` → 512MiB).
 */
export function formatBytes(bytes: number, units: 'decimal' | 'binary' = 'decimal'): string {
  const binary = units === 'binary';
  const names = binary ? ['B', 'KiB', 'MiB', 'GiB', 'TiB'] : ['B', 'kB', 'MB', 'GB', 'TB'];
  const step = binary ? 1024 : 1000;
  let value = bytes;
  let unit = 0;
  while (value >= step && unit < names.length - 1) {
    value /= step;
    unit++;
  }
  if (binary) return `${Number.isInteger(value) ? value : value.toFixed(1)}${names[unit]}`;
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 2 : 1)}${names[unit]}`;
}
