/**
 * ctr-spawn's flags, the one list: cli.ts parses with it, and scripts that
 * pass ctr-spawn flags on (conveyor-run, scripts/run.mjs) derive their
 * parsing from it, so a new flag cannot be taken for the image there. No side
 * effects on import (cli.ts runs the tool when imported; this does not).
 */
import { COMMON_FLAGS, type ArgSpec } from '@conveyor/lib-common/args';

/** Docker's run flags of issue 11 (runtime defaults and the flags Docker users reach for). */
const DOCKER_STRING = ['network', 'memory-swap', 'shm-size', 'oom-score-adj', 'pid', 'ipc', 'uts'];
const DOCKER_MULTIPLE = ['device', 'ulimit', 'sysctl', 'group-add', 'mount', 'add-host', 'dns', 'dns-search', 'dns-option'];

export const SPAWN_FLAGS = {
  string: [
    'entrypoint',
    'workdir',
    'user',
    'hostname',
    'net',
    'memory',
    'cpus',
    'pids-limit',
    'name',
    'record',
    'spec',
    'runtime',
    'runtime-root',
    'restart',
    ...DOCKER_STRING,
  ],
  multiple: ['env', 'env-file', 'volume', 'tmpfs', 'cap-add', 'cap-drop', 'security-opt', 'log-opt', 'publish', ...DOCKER_MULTIPLE],
  boolean: ['interactive', 'tty', 'detach', 'read-only', 'privileged', 'init', 'keep', 'rm', 'print-spec', 'check-flags', 'publish-all'],
  alias: {
    e: 'env',
    w: 'workdir',
    u: 'user',
    v: 'volume',
    m: 'memory',
    i: 'interactive',
    t: 'tty',
    d: 'detach',
    p: 'publish',
    P: 'publish-all',
  } as Record<string, string>,
  stopAtDoubleDash: true,
} satisfies ArgSpec;

/**
 * Every flag a run of ctr-spawn takes, the common ones (--root, -q,
 * --log-format, ...) included, by kind: `values` take a value, `switches` do
 * not; `alias` maps short to long names. --help and --version are left out:
 * they do not run a container.
 */
export const RUN_FLAGS = {
  values: [...COMMON_FLAGS.string, ...SPAWN_FLAGS.string, ...SPAWN_FLAGS.multiple],
  switches: [...COMMON_FLAGS.boolean.filter((f) => f !== 'help' && f !== 'version'), ...SPAWN_FLAGS.boolean],
  alias: Object.fromEntries(Object.entries({ ...COMMON_FLAGS.alias, ...SPAWN_FLAGS.alias }).filter(([, long]) => long !== 'help')),
};
