/** Docker-style plain tables for humans (when stdout is a terminal). */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** "3 days ago", as docker images prints CREATED. */
export function timeAgo(iso: string | undefined, now = Date.now()): string {
  if (!iso) return 'N/A';
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return 'N/A';
  const seconds = Math.max(0, Math.round((now - then) / 1000));
  const steps: [number, string][] = [
    [60, 'second'],
    [60, 'minute'],
    [24, 'hour'],
    [7, 'day'],
    [4.35, 'week'],
    [12, 'month'],
    [Infinity, 'year'],
  ];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (value < size) {
      const n = Math.floor(value);
      return n <= 1 && unit === 'second' ? 'Less than a second ago' : `${n} ${unit}${n === 1 ? '' : 's'} ago`;
    }
    value /= size;
  }
  return 'N/A';
}
