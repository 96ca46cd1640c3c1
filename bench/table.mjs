#!/usr/bin/env node
// Turns what bench/run.sh measured into the issue-17 table (printed) and docs/performance.md (written):
//   node bench/table.mjs RESULTS_DIR DOC SECONDS [quick] RUNS
// RESULTS_DIR holds hyperfine's KEY.json files, rss.tsv (key, name, kB), commands.tsv (key, name,
// command), notes.tsv (the scale figures: key, name, s, kB, command), skips.txt (why docker, podman
// were not run), facts-{before,after}.json and extra-*.txt (the older bench scripts' output).
// A figure that was not measured shows as "—"; nothing here fails the run but an unreadable dir.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

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
 * A goal row: our figure beside its peers (one hyperfine run, `key`), the ratio to `versus` (shown as `label`),
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
  goalRow({
    job: '`ctr-spawn < rootfs record` alone',
    key: 'run',
    ours: 'ctr-spawn < rootfs record',
    peers: ['runc run', 'node -e 0'],
    versus: 'runc run',
    label: 'runc',
    digits: 1,
    goal: (runc) => {
      const node = get('run', 'node -e 0');
      const target = node && runc ? node + runc + 0.02 : undefined;
      return { text: `<= node start + runc + 20 ms${target ? ` (${target.toFixed(3)} s)` : ''}`, target };
    },
  }),
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
];
{
  // Each tool was measured beside its own `node -e 0` (key startup-TOOL): its ratio is to that one.
  const startup = medians.startup ?? {};
  const tools = Object.keys(medians)
    .filter((key) => key.startsWith('startup-'))
    .map((key) => key.slice('startup-'.length))
    .filter((tool) => get(`startup-${tool}`, tool) && get(`startup-${tool}`, 'node -e 0'))
    .sort();
  const ratio = (tool) => get(`startup-${tool}`, tool) / get(`startup-${tool}`, 'node -e 0');
  const worst = Math.max(...tools.map(ratio));
  const figure = (tool) => {
    const mem = mb(rss[`startup-${tool}`]?.[tool]);
    return `${tool} ${get(`startup-${tool}`, tool).toFixed(3)} s = ${ratio(tool).toFixed(2)}x${mem ? ` (${mem})` : ''}`;
  };
  rows.push([
    'tool start-up (`--help`), each tool beside a `node -e 0` measured just before it',
    tools.map(figure).join(', ') || '—',
    ['node -e 0', ...(startup['node -e 0 with NODE_EXTRA_CA_CERTS'] ? ['node -e 0 with NODE_EXTRA_CA_CERTS'] : [])].map((n) => fig('startup', n)).join(', '),
    tools.length ? `up to ${worst.toFixed(2)}x` : '',
    `<= 1.2x${tools.length ? verdict(worst, 1.2) : ''}`,
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
medians of ${runs} hyperfine runs (twice that for the run and re-pull rows, four times for start-up), conveyor and its peers side by side in one run.
Peak RSS (in parentheses) is GNU time's \`%M\` of one more run of the same command: the largest single process
(a pipeline's biggest stage, not the sum; for docker, the client's: dockerd does the work and is not counted). The whole run took ${seconds} s.

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
