// The ctr-spawn goal row's arithmetic, shared by bench/table.mjs (docs/performance.md) and bench/spawn.sh: from the
// medians (seconds) of one interleaved run (key spawn), the goal "node start + runc + 20 ms" with each runc figure,
// and how ctr-spawn's time splits beside the floor (bench/spawn-floor.cjs: Node spawning runc and nothing else).
// Pure: undefined where a figure is missing.

/** The commands' names in the spawn run (bench/run.sh, bench/spawn.sh). */
export const SPAWN = {
  ours: 'ctr-spawn < rootfs record',
  runcDefault: 'runc run',
  runcOurs: "runc run (ctr-spawn's config.json)",
  floor: 'node spawning runc (floor)',
  node: 'node -e 0',
};

/** The goal's target with `runc`'s median: node + runc + 20 ms. */
export function spawnTarget(median) {
  const node = median(SPAWN.node);
  return (runc) => (node !== undefined && runc !== undefined ? node + runc + 0.02 : undefined);
}

/**
 * Where ctr-spawn's time beyond node + runc(its config.json) goes, in ms: `node` is what Node costs a process that
 * only spawns runc (floor - node - runc), `own` what ctr-spawn does beyond that (ctr-spawn - floor: loading its
 * program, the record, spec, state and clean-up). Undefined without the floor's figure.
 */
export function spawnSplit(median) {
  const [ours, floor, node, runc] = [SPAWN.ours, SPAWN.floor, SPAWN.node, SPAWN.runcOurs].map(median);
  if ([ours, floor, node, runc].some((v) => v === undefined)) return undefined;
  return { node: (floor - node - runc) * 1000, own: (ours - floor) * 1000 };
}
