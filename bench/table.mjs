#!/usr/bin/env node
// Turns what bench/run.sh measured into the issue-17 table (printed) and docs/performance.md (written):
//   node bench/table.mjs RESULTS_DIR DOC SECONDS [quick] RUNS
// RESULTS_DIR holds KEY.json files (hyperfine's, or bench/ab.mjs's in the same shape), rss.tsv (key, name, kB), commands.tsv (key, name,
// command), notes.tsv (the scale figures: key, name, s, kB, command), skips.txt (why docker, podman
// were not run), facts-{before,after}.json and extra-*.txt (the older bench scripts' output).
// A figure that was not measured shows as "—"; nothing here fails the run but an unreadable dir.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { SPAWN, spawnSplit, spawnTarget } from './spawn-goal.mjs';

const [dir, doc, seconds, quickFlag, runs] = process.argv.slice(2);
const read = (name) => (existsSync(join(dir, name)) ? readFileSync(join(dir, name), 'utf8') : '');
const tsv = (name) =>
  read(name)
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t'));
const checkout = resolve(import.meta.dirname, '..');

const medians = {}; // key → name → s
for (const file of readdirSync(dir).filter((f) => f.endsWith('.json') && !f.startsWith('facts'))) {
  const key = basename(file, '.json');
  try {
    medians[key] = Object.fromEntries(JSON.parse(read(file)).results.map((r) => [r.command, r.median]));
  } catch {
    // hyperfine did not finish this one: its figures show as missing.
  }
}
const rss = {};
for (const [key, name, kb] of tsv('rss.tsv')) (rss[key] ??= {})[name] = Number(kb);
const commands = tsv('commands.tsv');
const notes = tsv('notes.tsv');
for (const [key, name, s, kb, command] of notes) {
  (medians[key] ??= {})[name] = Number(s);
  (rss[key] ??= {})[name] = Number(kb);
  commands.push([key, name, command]);
}
const [dockerSkip = '', podmanSkip = ''] = read('skips.txt').split('\n');
const skip = {
  'docker run': dockerSkip,
  'docker run --pull=always': dockerSkip,
  'docker pull': dockerSkip,
  'podman run': podmanSkip,
  'podman pull': podmanSkip,
};

const failed = new Set(tsv('failed.tsv').map(([key, name]) => `${key}\t${name}`));
const mb = (kb) => (kb ? `${Math.round(kb / 1024)} MB` : '');
const fig = (key, name) => {
  const s = medians[key]?.[name];
  if (failed.has(`${key}\t${name}`)) return `${name}: failed (bench output says why)`;
  if (s === undefined) return skip[name] ? `${name}: ${skip[name]}` : `${name}: —`;
  const mem = mb(rss[key]?.[name]);
  return `${name} ${s.toFixed(3)} s${mem ? ` (${mem})` : ''}`;
};
const get = (key, name) => (failed.has(`${key}\t${name}`) ? undefined : medians[key]?.[name]);
const verdict = (value, target) => (value === undefined || target === undefined || Number.isNaN(target) ? '' : value <= target ? ' **met**' : ' **missed**');

/**
 * A goal row: our figure beside its peers (one measured run of commands, `key`), the ratio to `versus` (shown as `label`),
 * and the goal: `goal(versus median)` gives its text and the target our median must not exceed.
 */
const goalRow = ({ job, key, ours, peers, versus, label, digits = 2, goal }) => {
  const mine = get(key, ours);
  const theirs = get(key, versus);
  const { text, target } = goal(theirs);
  return [
    job,
    fig(key, ours),
    peers.map((n) => fig(key, n)).join(', '),
    mine && theirs ? `${(mine / theirs).toFixed(digits)}x ${label}` : '',
    `${text}${verdict(mine, target)}`,
  ];
};

const rows = [
  goalRow({
    job: 'warm run of `/bin/true`, whole pipeline `img-fetch --pull=missing | layer-unpack | ctr-spawn --net none` (what conveyor-run runs; docker: `--network none`, its default pull policy `missing`)',
    key: 'run',
    ours: 'img-fetch --pull=missing | layer-unpack | ctr-spawn',
    peers: ['docker run', 'podman run', 'runc run', '3 piped node -e 0'],
    versus: 'docker run',
    label: 'docker',
    goal: (docker) => ({ text: '<= 0.5x docker run', target: docker && docker * 0.5 }),
  }),
  goalRow({
    job: "the same with the registry asked first: `img-fetch | layer-unpack | ctr-spawn` (img-fetch's default `--pull=always`)",
    key: 'run',
    ours: 'img-fetch | layer-unpack | ctr-spawn',
    peers: ['docker run --pull=always'],
    versus: 'docker run --pull=always',
    label: 'docker',
    goal: (docker) => ({ text: '<= 0.5x docker run --pull=always', target: docker && docker * 0.5 }),
  }),
  (() => {
    // The goal "node start + runc + 20 ms" two ways: with runc running `runc spec`'s default bundle (no seccomp,
    // no cgroup, no overlay: the old row) and with runc running the config.json ctr-spawn writes (run.sh), all five
    // commands (the floor, bench/spawn-floor.cjs, and node -e 0 too) interleaved run by run (key spawn, bench/ab.mjs),
    // each with its median CPU (user+sys) too; spawn-goal.mjs does the arithmetic.
    const key = 'spawn';
    let cpu = {};
    try {
      cpu = Object.fromEntries(JSON.parse(read(`${key}.json`)).results.map((r) => [r.command, r.cpu_median]));
    } catch {
      // not measured: no CPU figures
    }
    const figure = (name) => {
      const f = fig(key, name);
      return get(key, name) !== undefined && cpu[name] !== undefined ? `${f}, CPU ${cpu[name].toFixed(3)} s` : f;
    };
    const median = (name) => get(key, name);
    const spawn = median(SPAWN.ours);
    const target = spawnTarget(median);
    const goal = (runc, label) => {
      const t = target(runc);
      return `node + ${label} + 20 ms${t ? ` = ${t.toFixed(3)} s` : ''}${verdict(spawn, t)}`;
    };
    const ratio = (runc, label) => (spawn && runc ? `${(spawn / runc).toFixed(1)}x ${label}` : '');
    const split = spawnSplit(median);
    return [
      "`ctr-spawn < rootfs record` alone, beside runc twice: `runc spec`'s default bundle (`runc run`) and the config.json ctr-spawn itself writes (Docker's seccomp profile, a cgroup, masked paths, the overlay runc mounts; a fresh upper dir and cgroup each run), and the floor of a Node wrapper, bench/spawn-floor.cjs starting that same runc and nothing else; the five interleaved run by run (bench/ab.mjs)",
      figure(SPAWN.ours),
      [SPAWN.runcDefault, SPAWN.runcOurs, SPAWN.floor, SPAWN.node].map(figure).join(', '),
      [ratio(median(SPAWN.runcDefault), 'runc (default spec)'), ratio(median(SPAWN.runcOurs), "runc (ctr-spawn's spec)")].filter(Boolean).join(', '),
      `<= node start + runc + 20 ms: ${goal(median(SPAWN.runcDefault), 'runc(default spec)')}; ${goal(median(SPAWN.runcOurs), "runc(ctr-spawn's spec)")}` +
        (split ? `. Beyond node + runc: ${split.node.toFixed(1)} ms is Node's spawning runc (floor), ${split.own.toFixed(1)} ms ctr-spawn's own` : ''),
    ];
  })(),
  goalRow({
    job: 'cold pull of the 30 MB debian',
    key: 'fetch',
    ours: 'img-fetch',
    peers: ['skopeo'],
    versus: 'skopeo',
    label: 'skopeo',
    goal: (skopeo) => ({ text: '<= 1.0x skopeo', target: skopeo }),
  }),
  goalRow({
    job: 'cold pull + unpack of the 30 MB debian',
    key: 'cold',
    ours: 'img-fetch | layer-unpack',
    peers: ['docker pull', 'skopeo + umoci unpack', 'podman pull'],
    versus: 'docker pull',
    label: 'docker',
    goal: (docker) => ({ text: '<= 0.5x docker pull', target: docker && docker * 0.5 }),
  }),
  (() => {
    // No goal of its own: how much of the unpack the download hides once the network is the slower side.
    const key = 'slow';
    const ours = get(key, 'img-fetch | layer-unpack');
    const ratio = (name, label) => (ours && get(key, name) ? `${(ours / get(key, name)).toFixed(2)}x ${label}` : '');
    return [
      'cold pull + unpack of the 30 MB debian over a 100 Mbit/s link (bench/slow-link.mjs in front of the registry, every side through it): `img-fetch | layer-unpack` unpacks a layer while it downloads; `img-fetch, then layer-unpack` is the same tools one after the other',
      fig(key, 'img-fetch | layer-unpack'),
      ['img-fetch, then layer-unpack', 'docker pull', 'skopeo + umoci unpack'].map((n) => fig(key, n)).join(', '),
      [ratio('img-fetch, then layer-unpack', 'one after the other'), ratio('docker pull', 'docker')].filter(Boolean).join(', '),
      '',
    ];
  })(),
];
{
  // All tools and `node -e 0` were run interleaved in one bench/ab.mjs call (key startup): each tool's median
  // wall and CPU (user+sys) against node's, which ran ten times a round between them.
  let ab = {};
  try {
    ab = JSON.parse(read('startup.json'));
  } catch {
    // not measured: the row shows "—"
  }
  const of = new Map((ab.results ?? []).filter((r) => !failed.has(`startup\t${r.command}`)).map((r) => [r.command, r]));
  const node = of.get('node -e 0');
  const tools = [...of.keys()].filter((n) => !n.startsWith('node -e 0')).sort();
  const ratio = (tool, field) => of.get(tool)[field] / node[field];
  const worst = (field) => tools.reduce((w, t) => (ratio(t, field) > ratio(w, field) ? t : w), tools[0]);
  const figure = (tool) => {
    const mem = mb(rss.startup?.[tool]);
    return `${tool} ${of.get(tool).median.toFixed(3)} s = ${ratio(tool, 'median').toFixed(2)}x, CPU ${ratio(tool, 'cpu_median').toFixed(2)}x${mem ? ` (${mem})` : ''}`;
  };
  const nodeFigure = (name) => {
    const r = of.get(name);
    if (!r) return fig('startup', name);
    const mem = mb(rss.startup?.[name]);
    return `${name} ${r.median.toFixed(3)} s, CPU ${r.cpu_median.toFixed(3)} s${mem ? ` (${mem})` : ''}`;
  };
  const measured = node && tools.length > 0;
  const worstWall = measured && worst('median');
  const worstCpu = measured && worst('cpu_median');
  rows.push([
    `tool start-up (\`--help\`): the ${tools.length || ''} tools and \`node -e 0\` interleaved run by run (bench/ab.mjs: ${ab.rounds ?? '?'} rounds, each in a new random order, \`node -e 0\` ten times a round), median wall time and median CPU (user+sys) of each against \`node -e 0\`'s`,
    measured ? tools.map(figure).join(', ') : '—',
    ['node -e 0', 'node -e 0 with NODE_EXTRA_CA_CERTS']
      .filter((n) => of.has(n) || n === 'node -e 0')
      .map(nodeFigure)
      .join(', '),
    measured ? `wall up to ${ratio(worstWall, 'median').toFixed(2)}x (${worstWall}), CPU up to ${ratio(worstCpu, 'cpu_median').toFixed(2)}x (${worstCpu})` : '',
    `<= 1.2x${measured ? `: wall${verdict(ratio(worstWall, 'median'), 1.2)}, CPU${verdict(ratio(worstCpu, 'cpu_median'), 1.2)}` : ''}`,
  ]);
}
{
  const r = medians.repull ?? {};
  rows.push([
    're-pull of a present image (a HEAD to the registry)',
    ['img-fetch', 'img-fetch --pull=missing'].map((n) => fig('repull', n)).join(', '),
    fig('repull', 'node -e 0'),
    r['img-fetch'] && r['node -e 0'] ? `${(r['img-fetch'] / r['node -e 0']).toFixed(2)}x node` : '',
    '',
  ]);
}

// Scale figures.
const scale = [];
{
  const ls = medians['scale-ls'] ?? {};
  const name = Object.keys(ls).find((n) => n.startsWith('img-ls ('));
  scale.push([
    `\`img-ls\` with ${name ? name.match(/\((\d+)/)[1] : '?'} images in the store`,
    name ? fig('scale-ls', name) : '—',
    '',
    `< 0.3 s${verdict(name && ls[name], 0.3)}`,
  ]);
}
{
  const l = medians.layers ?? {};
  for (const step of ['img-fetch', 'layer-unpack', 'overlay-mount']) {
    const names = Object.keys(l).filter((n) => n.startsWith(`${step} `));
    const per = names.map((n) => `${((l[n] / Number(n.match(/(\d+) layers/)[1])) * 1000).toFixed(1)} ms/layer at ${n.match(/(\d+) layers/)[1]}`);
    scale.push([`${step} of a many-layer image (4 KiB layers)`, names.map((n) => fig('layers', n)).join(', ') || '—', per.join(', '), 'time per layer flat']);
  }
}
/** A scale row whose goal is a peak RSS under 150 MB: the figures of `key` and the largest of their peaks. */
const peakRow = (job, key) => {
  const peaks = rss[key] ?? {};
  const names = Object.keys(peaks);
  const worst = Math.max(0, ...names.map((n) => peaks[n]));
  return [
    job,
    names.map((n) => fig(key, n)).join(', ') || '—',
    names.length ? `peak ${mb(worst)}` : '',
    `< 150 MB${names.length ? (worst <= 150 * 1024 ? ' **met**' : ' **missed**') : ''}`,
  ];
};
scale.push(peakRow('a big layer (uncompressed tar), peak RSS', 'big'));
scale.push(peakRow('many small files: two layers of 20,000 files each, unpacked at once, peak RSS', 'files'));
{
  const m = medians.many ?? {};
  const names = Object.keys(m);
  scale.push([
    'containers started at once (`ctr-spawn -d`)',
    names.map((n) => (n.startsWith('supervisor') ? `${n}: ${mb(rss.many[n])}` : fig('many', n))).join(', ') || '—',
    '',
    '',
  ]);
}

const facts = (when) => {
  try {
    return JSON.parse(read(`facts-${when}.json`));
  } catch {
    return {};
  }
};
const before = facts('before');
const after = facts('after');
// A \`|\` inside a cell (the pipelines' names) would end it: escaped, unless the caller did.
const cell = (c) => String(c).replace(/(?<!\\)\|/g, '\\|');
const table = (head, body) =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...body.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
const mainTable = table(['job', 'conveyor (peak RSS)', 'peers, same run (peak RSS)', 'ratio', 'goal'], rows);
const scaleTable = table(['job', 'conveyor (peak RSS)', 'per unit', 'goal'], scale);
process.stdout.write(`\n${mainTable}\n\n${scaleTable}\n\n`);

const portable = (command) =>
  command
    .replaceAll(`${checkout}/`, '')
    .replace(/\/tmp\/conveyor-(bench|scale)\.\w+/g, '$WORK')
    .replace(/127\.0\.0\.1:\d+/g, '$REGISTRY');
const extras = readdirSync(dir)
  .filter((f) => f.startsWith('extra-') && f.endsWith('.txt'))
  .map((f) => {
    const script = f.slice('extra-'.length, -'.txt'.length);
    const title = read(`extra-${script}.title`).trim();
    return `### ${title} (\`bench/${script}\`)\n\n\`\`\`\n${read(f).trimEnd()}\n\`\`\``;
  });

writeFileSync(
  doc,
  `<!-- Generated by \`make bench\` (bench/run.sh, bench/table.mjs): do not edit; run it again. -->
# Performance

Measured by \`make bench\` on ${before.date ?? '?'}${quickFlag === 'quick' ? ' with BENCH_QUICK=1 (fewer runs, smaller scale: a check of the scripts, not the figures)' : ''}:
medians, conveyor and its peers side by side in one run. The goal rows (cold pull, cold pull + unpack, warm run,
ctr-spawn alone, start-up) are interleaved run by run (bench/ab.mjs: each round runs every command once, in a new
random order, so a machine that drifts moves all sides alike): ${runs * 2} rounds for the cold pull, ${Number(runs) + 3} for
cold pull + unpack (each cold run followed, untimed, by the removal of what it pulled, a sync and a second's rest),
${runs} for it over the slow link (the same way), ${runs * 3} for the warm run, ${runs * 4} for ctr-spawn alone; the re-pull row is ${runs * 2} hyperfine runs.
Peak RSS (in parentheses) is the largest single process of a run (wait4's, bench/rusage.c; GNU time's \`%M\` for
hyperfine's rows): a pipeline's biggest stage, not the sum; for docker, the client's: dockerd does the work and is
not counted. Interleaved rows give the median over their runs. The whole run took ${seconds} s.

| machine | |
|---|---|
| cores | ${before.cores ?? '?'} × ${before.cpu ?? '?'} |
| memory | ${before.memoryGiB ?? '?'} GiB |
| kernel | ${before.kernel ?? '?'} |
| node | ${before.node ?? '?'} |
| load average (1, 5, 15 min) before | ${(before.load ?? []).join(', ')} |
| load average after | ${(after.load ?? []).join(', ')} |

A loaded machine makes every figure noisy; the ratios (same run) are what to compare.
Node processes run without this machine's \`NODE_EXTRA_CA_CERTS\` (bench/lib.sh says why; Node parses that file at
every start, a cost of the environment that no Go peer pays); the start-up row shows \`node -e 0\` with it too.
Each tool runs its bundle from \`make build\` (run.sh checks): a head that answers \`--help\` alone, and a body with a V8
code cache the build trained on the tool's real run path (scripts/build/training.mjs) for the warm pipeline's tools.

${mainTable}

## Scale

${scaleTable}

## Commands

Each figure's command (\`$WORK\` is the run's temporary directory, \`$REGISTRY\` its loopback registry, a
Debian docker-registry seeded with the shared images; \`STORE\` the scale run's store):

${table(
  ['figure', 'command'],
  commands.map(([key, name, command]) => [`${key}: ${name}`, `\`${portable(command).replaceAll('|', '\\|')}\``]),
)}

## Other benchmarks

${extras.join('\n\n')}
`,
);
