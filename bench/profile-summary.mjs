#!/usr/bin/env node
// Self time by function, averaged over the V8 CPU profiles in a directory (`node --cpu-prof --cpu-prof-dir DIR
// --cpu-prof-interval 50 <tool> ...`, run a few times): where a tool's start-up goes, function by function.
// Usage: node bench/profile-summary.mjs DIR [TOP=40]
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, top = '40'] = process.argv.slice(2);
if (!dir) {
  console.error('usage: profile-summary.mjs DIR [TOP]');
  process.exit(2);
}
const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
const selfMicros = new Map();
let total = 0;
for (const file of files) {
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  profile.samples.forEach((id, i) => {
    const { functionName, url, lineNumber } = nodes.get(id).callFrame;
    const key = `${functionName || '(anonymous)'} ${url.replace(/.*\//, '')}:${lineNumber + 1}`;
    const micros = profile.timeDeltas[i] ?? 0;
    selfMicros.set(key, (selfMicros.get(key) ?? 0) + micros);
    total += micros;
  });
}
const ms = (micros) => (micros / 1000 / files.length).toFixed(2).padStart(8);
console.log(`${ms(total)} ms per run in all (${files.length} profiles)`);
for (const [key, micros] of [...selfMicros].sort((a, b) => b[1] - a[1]).slice(0, Number(top))) console.log(`${ms(micros)} ${key}`);
