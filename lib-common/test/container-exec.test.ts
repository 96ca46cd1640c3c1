import t from 'tap';
import { envValue, mergeEnv, resolveEnvEntries } from '../src/container/env.js';
import { execProcess, type SpecProcess } from '../src/container/exec.js';
import { parseGroup, parsePasswd, resolveUserIn } from '../src/container/user.js';

const base: SpecProcess = {
  terminal: false,
  user: { uid: 1000, gid: 1000, additionalGids: [50], umask: 18 },
  args: ['sleep', '600'],
  env: ['PATH=/usr/bin:/bin', 'HOSTNAME=abc', 'HOME=/home/app', 'FOO=bar'],
  cwd: '/home/app',
  capabilities: { bounding: ['CAP_KILL'], effective: ['CAP_KILL'], permitted: ['CAP_KILL'] },
  rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
  noNewPrivileges: true,
  apparmorProfile: 'docker-default',
  consoleSize: { height: 24, width: 80 },
};

t.test("execProcess: the container's process with the overrides", async (t) => {
  const root = { uid: 0, gid: 0, additionalGids: [10], home: '/root', name: 'root' };
  // [what, overrides, expected fields]
  const cases: [string, Parameters<typeof execProcess>[1], Record<string, unknown>][] = [
    [
      'defaults: the container user, cwd and env',
      { command: ['ps'], env: [], tty: false },
      { args: ['ps'], cwd: '/home/app', env: base.env, user: base.user, terminal: false },
    ],
    [
      '-e adds and replaces, keeping the order',
      { command: ['env'], env: ['FOO=baz', 'NEW=1'], tty: false },
      { env: ['PATH=/usr/bin:/bin', 'HOSTNAME=abc', 'HOME=/home/app', 'FOO=baz', 'NEW=1'] },
    ],
    [
      '-u: uid, gid, groups (the primary one among them, as docker exec) and HOME of that user; other user fields kept',
      { command: ['id'], env: [], user: root, tty: false },
      { user: { uid: 0, gid: 0, additionalGids: [0, 10], umask: 18 }, env: ['PATH=/usr/bin:/bin', 'HOSTNAME=abc', 'HOME=/root', 'FOO=bar'] },
    ],
    [
      '-u with -e HOME: -e wins',
      { command: ['id'], env: ['HOME=/x'], user: root, tty: false },
      { env: ['PATH=/usr/bin:/bin', 'HOSTNAME=abc', 'HOME=/x', 'FOO=bar'] },
    ],
    ['-w', { command: ['pwd'], env: [], cwd: '/tmp', tty: false }, { cwd: '/tmp' }],
    ['-t: a terminal and TERM=xterm', { command: ['sh'], env: [], tty: true }, { terminal: true, env: [...(base.env ?? []), 'TERM=xterm'] }],
    ['-t with -e TERM: -e wins', { command: ['sh'], env: ['TERM=vt100'], tty: true }, { env: [...(base.env ?? []), 'TERM=vt100'] }],
    [
      'security settings carried over verbatim',
      { command: ['true'], env: [], tty: false },
      { capabilities: base.capabilities, rlimits: base.rlimits, noNewPrivileges: true, apparmorProfile: 'docker-default' },
    ],
  ];
  for (const [what, overrides, expected] of cases) t.match(execProcess(base, overrides), expected, what);
  for (const [what, overrides, expected] of cases) {
    const result = execProcess(base, overrides);
    for (const key of ['env', 'user', 'args'] as const) if (key in expected) t.strictSame(result[key], expected[key], `${what}: ${key} exactly`);
  }
  t.notOk('consoleSize' in execProcess(base, { command: ['sh'], env: [], tty: true }), "the container's console size is not the caller's");
  t.strictSame(base.args, ['sleep', '600'], 'the base is not changed');
});

t.test('user resolution in passwd and group (shared with ctr-spawn)', async (t) => {
  const passwd = parsePasswd('root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbroken:x:abc:1::/:/bin/sh\n');
  const groups = parseGroup('root:x:0:\nstaff:x:50:app\napp:x:1000:\n');
  const cases: [string, Record<string, unknown> | string][] = [
    ['app', { uid: 1000, gid: 1000, additionalGids: [50], home: '/home/app', name: 'app' }],
    ['1000', { uid: 1000, gid: 1000, home: '/home/app' }],
    ['app:staff', { uid: 1000, gid: 50, additionalGids: [] }],
    ['4242', { uid: 4242, gid: 0, home: '/' }],
    ['4242:77', { uid: 4242, gid: 77 }],
    ['', { uid: 0, gid: 0, home: '/root' }],
    ['nobody', 'ERR_USER_NOT_FOUND'],
    ['broken', 'ERR_USER_NOT_FOUND'],
    ['app:nogroup', 'ERR_USER_NOT_FOUND'],
    ['a:b:c', 'ERR_USER_NOT_FOUND'],
  ];
  for (const [spec, expected] of cases) {
    if (typeof expected === 'string') t.throws(() => resolveUserIn(spec, passwd, groups), { code: expected }, JSON.stringify(spec));
    else t.match(resolveUserIn(spec, passwd, groups), expected, JSON.stringify(spec));
  }
});

t.test('env helpers', async (t) => {
  t.strictSame(resolveEnvEntries(['A=1', 'B', 'C'], { B: 'from-host' }), ['A=1', 'B=from-host'], 'KEY alone: from the caller, dropped when unset');
  t.throws(() => resolveEnvEntries(['=x'], {}), { code: 'ERR_USAGE' });
  t.throws(() => resolveEnvEntries([' A=1'], {}), { code: 'ERR_USAGE' });
  t.strictSame(mergeEnv(['A=1', 'B=2'], ['A=3'], ['C=4']), ['A=3', 'B=2', 'C=4']);
  t.equal(envValue(['A=1', 'AB=2'], 'AB'), '2');
  t.equal(envValue(['A=1'], 'B'), undefined);
  t.equal(envValue(['A=x=y'], 'A'), 'x=y');
});

t.test('runtimeCommand: the runtime as given, or inside the user namespace of a process (rootless)', async (t) => {
  const { runtimeCommand } = await import('../src/container/runtime.js');
  // [what, runtime, args, expected]
  const cases: [string, Parameters<typeof runtimeCommand>[0], string[], { file: string; args: string[] }][] = [
    [
      'root: runc itself',
      { runtime: 'runc', runtimeRoot: '/run/conveyor-runc' },
      ['kill', 'abc', 'TERM'],
      { file: 'runc', args: ['--root', '/run/conveyor-runc', 'kill', 'abc', 'TERM'] },
    ],
    [
      'rootless: nsenter into the userns of the pid, credentials kept (a single mapping denies setgroups)',
      { runtime: '/usr/sbin/runc', runtimeRoot: '/home/u/.local/share/conveyor/runtime', userNamespaceOf: 4242 },
      ['exec', '--process', 'p.json', 'abc'],
      {
        file: 'nsenter',
        args: [
          '--user',
          '--preserve-credentials',
          '--target=4242',
          '--',
          '/usr/sbin/runc',
          '--root',
          '/home/u/.local/share/conveyor/runtime',
          'exec',
          '--process',
          'p.json',
          'abc',
        ],
      },
    ],
  ];
  for (const [what, rt, args, expected] of cases) t.strictSame(runtimeCommand(rt, args), expected, what);
});
