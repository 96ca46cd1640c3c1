#!/usr/bin/env node
// Prints the machine facts docs/performance.md states beside its figures (cores, CPU, kernel, node,
// load average, date) as one JSON object. Fails only if /proc cannot be read.
import { cpus, loadavg, release, totalmem } from 'node:os';

const cpu = cpus();
process.stdout.write(
  `${JSON.stringify({
    when: process.argv[2] ?? 'now',
    date: new Date().toISOString(),
    cores: cpu.length,
    cpu: cpu[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    load: loadavg().map((l) => l.toFixed(2)),
  })}\n`,
);
