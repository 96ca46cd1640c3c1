// Preloaded into every test process (package.json tap.node-arg). tap loads its process-info
// loader (@tapjs/processinfo) into each test and, through process-on-spawn, into every child
// the test spawns: each tool run by a test would load tap's loader first (0.3-0.7 s a run
// here, times thousands of runs). Coverage is off (tap.disable-coverage), so nothing reads what
// it records. Children get the environment without it: the loader is taken out of NODE_OPTIONS
// and tap's variables are dropped at every spawn.
const state = globalThis[Symbol.for('process-on-spawn@*:singletonId')];
const strip = (opts) => {
  const env = {};
  for (const [key, value] of Object.entries(opts.env)) {
    if (key.startsWith('_TAPJS_PROCESSINFO_')) continue;
    if (key === 'NODE_OPTIONS') {
      const rest = value
        .split(/\s+/)
        .filter((option) => option !== '' && !option.includes('@tapjs/processinfo'))
        .join(' ');
      if (rest !== '') env[key] = rest;
      continue;
    }
    env[key] = value;
  }
  opts.env = env;
};
if (state) state.listeners.push(strip);
