/**
 * Docker's default seccomp profile: the table it turns into for a container
 * (per capability, architecture and kernel), Docker-format profile files, and
 * what a process inside a real container can and cannot call.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxRootfs, removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { DEFAULT_PROFILE, defaultSeccomp, parseProfile, translateProfile, type DockerProfile } from '../src/seccomp.js';
import { loadSeccompProfile, parseSecurityOpts } from '../src/options.js';
import { DEFAULT_CAPS } from '../src/spec.js';
import { buildSeccompProbe, ctrSpawn, probeResults } from './helpers.js';

interface Rule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: { index: number; value: number; op: string }[];
}
interface Seccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  syscalls: Rule[];
}

const ERRNO: Record<number, string> = { 1: 'EPERM', 38: 'ENOSYS', 13: 'EACCES' };

/** What the filter does with a syscall: allow, args (allowed for some argument values), or the errno. */
function verdict(seccomp: Seccomp, name: string): string {
  const rules = seccomp.syscalls.filter((r) => r.names.includes(name));
  if (rules.some((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args)) return 'allow';
  const refused = rules.find((r) => r.action === 'SCMP_ACT_ERRNO');
  if (refused) return ERRNO[refused.errnoRet ?? 1];
  if (rules.some((r) => r.action === 'SCMP_ACT_ALLOW')) return 'args';
  return ERRNO[seccomp.defaultErrnoRet ?? 1];
}

const table = (caps: string[], arch = 'x64', kernel = '6.1.0') => defaultSeccomp(caps, arch, DEFAULT_PROFILE, kernel) as unknown as Seccomp;
const withCap = (cap: string) => [...DEFAULT_CAPS, cap];

t.test('the default profile for a container, per capability', async (t) => {
  // [syscall, Docker's default capabilities, + CAP_SYS_ADMIN, + CAP_SYS_PTRACE]
  const expected: [string, string, string, string][] = [
    ['read', 'allow', 'allow', 'allow'],
    ['execve', 'allow', 'allow', 'allow'],
    ['clock_adjtime', 'allow', 'allow', 'allow'],
    ['adjtimex', 'allow', 'allow', 'allow'],
    ['name_to_handle_at', 'allow', 'allow', 'allow'],
    ['chroot', 'allow', 'allow', 'allow'], // CAP_SYS_CHROOT is a default capability
    ['arch_prctl', 'allow', 'allow', 'allow'],
    ['ptrace', 'allow', 'allow', 'allow'], // kernel >= 4.8
    ['clone', 'args', 'allow', 'args'],
    ['clone3', 'ENOSYS', 'allow', 'ENOSYS'],
    ['unshare', 'EPERM', 'allow', 'EPERM'],
    ['setns', 'EPERM', 'allow', 'EPERM'],
    ['mount', 'EPERM', 'allow', 'EPERM'],
    ['mount_setattr', 'EPERM', 'allow', 'EPERM'],
    ['fanotify_init', 'EPERM', 'allow', 'EPERM'],
    ['bpf', 'EPERM', 'allow', 'EPERM'],
    ['sethostname', 'EPERM', 'allow', 'EPERM'],
    ['pidfd_getfd', 'EPERM', 'EPERM', 'allow'],
    ['process_madvise', 'EPERM', 'EPERM', 'allow'],
    ['kcmp', 'EPERM', 'EPERM', 'allow'],
    ['io_uring_setup', 'EPERM', 'EPERM', 'EPERM'],
    ['io_uring_enter', 'EPERM', 'EPERM', 'EPERM'],
    ['io_uring_register', 'EPERM', 'EPERM', 'EPERM'],
    ['keyctl', 'EPERM', 'EPERM', 'EPERM'],
    ['add_key', 'EPERM', 'EPERM', 'EPERM'],
    ['userfaultfd', 'EPERM', 'EPERM', 'EPERM'],
    ['kexec_load', 'EPERM', 'EPERM', 'EPERM'],
    ['init_module', 'EPERM', 'EPERM', 'EPERM'],
    ['reboot', 'EPERM', 'EPERM', 'EPERM'],
    ['clock_settime', 'EPERM', 'EPERM', 'EPERM'],
    ['perf_event_open', 'EPERM', 'allow', 'EPERM'],
    ['open_by_handle_at', 'EPERM', 'EPERM', 'EPERM'],
    ['socket', 'args', 'args', 'args'],
    ['personality', 'args', 'args', 'args'],
    ['modify_ldt', 'allow', 'allow', 'allow'],
    ['set_tls', 'EPERM', 'EPERM', 'EPERM'], // arm only
    ['no_such_syscall', 'EPERM', 'EPERM', 'EPERM'],
  ];
  const profiles = [table(DEFAULT_CAPS), table(withCap('CAP_SYS_ADMIN')), table(withCap('CAP_SYS_PTRACE'))];
  for (const [name, ...verdicts] of expected) {
    t.strictSame(
      profiles.map((p) => verdict(p, name)),
      verdicts,
      name,
    );
  }
  const base = profiles[0];
  t.equal(base.defaultAction, 'SCMP_ACT_ERRNO', 'an allowlist');
  t.equal(base.defaultErrnoRet, 1, 'EPERM by default');
  t.strictSame(base.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'], 'archMap for amd64: i386 programs run, x32 is left out');
  t.strictSame(
    base.syscalls.filter((r) => r.names.includes('clone')).map((r) => r.args),
    [[{ index: 0, value: 0x7e020000, op: 'SCMP_CMP_MASKED_EQ' }]],
    'clone without namespace flags only',
  );
  t.strictSame(
    base.syscalls.filter((r) => r.names.includes('socket')).map((r) => r.args![0]),
    [
      { index: 0, value: 38, op: 'SCMP_CMP_LT' },
      { index: 0, value: 39, op: 'SCMP_CMP_EQ' },
      { index: 0, value: 40, op: 'SCMP_CMP_GT' },
    ],
    'socket: every family but AF_ALG and AF_VSOCK',
  );
  t.strictSame(
    base.syscalls.filter((r) => r.names.includes('personality')).map((r) => r.args![0].value),
    [0, 8, 0x20000, 0x20008, 0xffffffff],
    "personality: Docker's values",
  );
  // runc skips names libseccomp does not know without a word, so a typo would silently refuse a syscall.
  for (const rule of DEFAULT_PROFILE.syscalls!)
    for (const name of rule.names!) t.ok(/^[a-z_][a-z0-9_]*$/.test(name), `well-formed name ${name}`, { diagnostic: false });
});

t.test('architecture and kernel conditions', async (t) => {
  const arm = table(DEFAULT_CAPS, 'arm64');
  t.strictSame(arm.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  t.equal(verdict(arm, 'set_tls'), 'allow', 'arm: set_tls');
  t.equal(verdict(arm, 'arch_prctl'), 'EPERM', 'arm: no arch_prctl');
  const s390 = table(DEFAULT_CAPS, 's390x');
  t.strictSame(
    s390.syscalls.filter((r) => r.names.includes('clone')).map((r) => r.args![0].index),
    [1],
    's390x: clone flags are the second argument',
  );
  t.notOk('architectures' in table(DEFAULT_CAPS, 'ppc64'), 'ppc64le has no archMap entry: runc uses the native one');
  t.equal(verdict(table(DEFAULT_CAPS, 'x64', '4.4.0'), 'ptrace'), 'EPERM', 'before 4.8 ptrace stays refused (it could bypass seccomp)');
  t.equal(verdict(table(DEFAULT_CAPS, 'x64', '4.8.0-generic'), 'ptrace'), 'allow');
  t.equal(verdict(table(withCap('CAP_SYS_PTRACE'), 'x64', '4.4.0'), 'ptrace'), 'allow', 'CAP_SYS_PTRACE allows it on any kernel');
});

t.test('Docker-format profiles: translation and checks', async (t) => {
  const profile: DockerProfile = {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [
      { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      { name: 'chmod', action: 'SCMP_ACT_ERRNO', excludes: { caps: ['CAP_FOWNER'] } },
      { names: ['sync'], action: 'SCMP_ACT_ERRNO', includes: { caps: ['CAP_SYS_ADMIN', 'CAP_CHOWN'] } },
      { names: ['uname'], action: 'SCMP_ACT_LOG', includes: { arches: ['arm64'] } },
      { names: ['getpid'], action: 'SCMP_ACT_ERRNO', excludes: { minKernel: '5.0' } },
    ],
  };
  t.strictSame(translateProfile(profile, { capabilities: ['CAP_CHOWN'], arch: 'x64', kernel: '4.19' }), {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64'],
    syscalls: [
      { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      { names: ['chmod'], action: 'SCMP_ACT_ERRNO' },
      { names: ['getpid'], action: 'SCMP_ACT_ERRNO' },
    ],
  });
  t.strictSame(
    (translateProfile(profile, { capabilities: ['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_FOWNER'], arch: 'x64', kernel: '6.1' }) as unknown as Seccomp).syscalls.map(
      (r) => r.names[0],
    ),
    ['mkdir', 'sync'],
  );
  t.equal(translateProfile({ defaultAction: '', syscalls: [] }, { capabilities: [], arch: 'x64' }), undefined, 'an empty profile is unconfined, as in Docker');
  t.throws(() => translateProfile({ ...profile, archMap: DEFAULT_PROFILE.archMap }, { capabilities: [], arch: 'x64' }), {
    code: 'ERR_USAGE',
    message: /architectures and archMap/,
  });
  t.throws(
    () =>
      translateProfile(
        { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ name: 'a', names: ['b'], action: 'SCMP_ACT_ALLOW' }] },
        { capabilities: [], arch: 'x64' },
      ),
    { code: 'ERR_USAGE' },
  );

  // The default profile survives a round trip through Docker's JSON.
  t.strictSame(
    translateProfile(parseProfile(JSON.stringify(DEFAULT_PROFILE), 'default.json'), { capabilities: DEFAULT_CAPS, arch: 'x64', kernel: '6.1' }),
    table(DEFAULT_CAPS),
  );
  // [profile text, error pattern]
  const bad: [string, RegExp][] = [
    ['{', /not JSON/],
    ['[]', /not a JSON object/],
    ['{"defaultAction":"SCMP_ACT_NOPE"}', /defaultAction/],
    ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"ALLOW"}]}', /syscalls\[0\]\.action/],
    ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"action":"SCMP_ACT_ALLOW"}]}', /names no syscall/],
    ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":9,"value":0,"op":"SCMP_CMP_EQ"}]}]}', /index/],
    ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"op":"=="}]}]}', /op/],
    ['{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"new"}}]}', /minKernel/],
  ];
  for (const [text, pattern] of bad) t.throws(() => parseProfile(text, 'p.json'), { code: 'ERR_USAGE', message: pattern }, text);

  t.strictSame(parseSecurityOpts(['seccomp=/x.json']), { seccompUnconfined: false, seccompProfileFile: '/x.json', noNewPrivileges: false });
  t.strictSame(parseSecurityOpts(['seccomp:unconfined']), { seccompUnconfined: true, seccompProfileFile: undefined, noNewPrivileges: false });
  t.throws(() => parseSecurityOpts(['seccomp=unconfined', 'seccomp=/x.json']), { code: 'ERR_USAGE' });
  t.throws(() => parseSecurityOpts(['label=type:spc_t']), { code: 'ERR_USAGE' }, 'label options other than disable');
  await t.rejects(loadSeccompProfile('/nonexistent/profile.json'), { code: 'ERR_USAGE' });
});

// Real containers: the probe runs each syscall with arguments for which an
// unfiltered kernel does not answer EPERM, so EPERM means the filter.
const root = tempStore('conveyor-seccomp-');
t.teardown(() => removeStore(root));
const latest = busyboxRootfs(root, 'latest');
const probeDir = mkdtempSync(join(tmpdir(), 'conveyor-probe-'));
t.teardown(() => rmSync(probeDir, { recursive: true, force: true }));
buildSeccompProbe(probeDir);
const PROBES = [
  'clone_plain',
  'clone_newuser',
  'unshare_newuser',
  'clone3',
  'clock_adjtime',
  'io_uring_setup',
  'mount_setattr',
  'pidfd_getfd',
  'personality_query',
  'personality_bad',
  'x32_getpid',
  'i386_getpid',
];
// The raw x32 and i386 syscalls exist on x86_64 only (the probe answers "unknown" elsewhere).
const onX64 = process.arch === 'x64';
const probe = (flags: string[]) => ctrSpawn(latest, ['-v', `${probeDir}:/probe:ro`, ...flags, '--', '/probe/seccomp-probe', ...PROBES]);
// What an i386 syscall gives outside any filter: 'ok' where the kernel runs i386 code, a fault where it does not (a
// kernel without IA-32 emulation, or a PVM guest's: int $0x80 ends in SIGSEGV). The filter lets it through to that.
const hostI386 = onX64 ? probeResults(execFileSync(join(probeDir, 'seccomp-probe'), ['i386_getpid'], { encoding: 'utf8' })).i386_getpid : 'unknown';

t.test('inside a container: namespaces refused, ordinary calls allowed', async (t) => {
  if (onX64 && hostI386 !== 'ok') t.comment(`i386 syscalls fail on this kernel outside any filter (${hostI386}): the filter's i386 arch is not exercised`);
  const r = await probe([]);
  t.equal(r.code, 0, r.stderr);
  t.strictSame(probeResults(r.stdout), {
    clone_plain: 'ok',
    clone_newuser: 'EPERM',
    unshare_newuser: 'EPERM',
    clone3: 'ENOSYS',
    clock_adjtime: 'ok',
    io_uring_setup: 'EPERM',
    mount_setattr: 'EPERM',
    pidfd_getfd: 'EPERM',
    personality_query: 'ok',
    personality_bad: 'EPERM',
    // Not in the filter's architectures: libseccomp kills the caller (unfiltered: ENOSYS without the x32 ABI, ok with it).
    x32_getpid: onX64 ? 'SIGSYS' : 'unknown',
    i386_getpid: hostI386,
  });
  const shell = await ctrSpawn(latest, [
    '--',
    'sh',
    '-c',
    'ls / > /dev/null && echo hi | cat && sleep 0 && mkdir /tmp/d && echo ok; grep Seccomp: /proc/self/status',
  ]);
  t.equal(shell.code, 0, shell.stderr);
  t.match(shell.stdout, /^hi\nok\nSeccomp:\s+2\n$/, 'a shell, ls, pipes, mkdir run under the filter');
});

t.test('inside a container: CAP_SYS_ADMIN, unconfined and profile files', async (t) => {
  const admin = probeResults((await probe(['--cap-add', 'SYS_ADMIN'])).stdout);
  t.equal(admin.clone_newuser, 'ok', 'CAP_SYS_ADMIN: clone with namespace flags, as in Docker');
  t.equal(admin.unshare_newuser, 'ok');
  t.not(admin.clone3, 'ENOSYS', 'CAP_SYS_ADMIN: clone3 reaches the kernel');
  t.equal(admin.pidfd_getfd, 'EPERM', 'still not pidfd_getfd (CAP_SYS_PTRACE)');

  const unconfined = probeResults((await probe(['--security-opt', 'seccomp=unconfined'])).stdout);
  t.equal(unconfined.clone_newuser, 'ok');
  t.equal(unconfined.pidfd_getfd, 'EBADF', 'unconfined: the kernel answers');
  if (onX64) t.not(unconfined.x32_getpid, 'SIGSYS', 'unconfined: an x32 syscall reaches the kernel');

  const dir = t.testdir({
    'profile.json': JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['pidfd_getfd'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }] }),
    'broken.json': '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_DENY"}]}',
    'default.json': JSON.stringify(DEFAULT_PROFILE),
    'moby.json': JSON.stringify({
      ...DEFAULT_PROFILE,
      archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }, ...DEFAULT_PROFILE.archMap!.slice(1)],
    }),
  });
  const custom = probeResults((await probe(['--security-opt', `seccomp=${join(dir, 'profile.json')}`])).stdout);
  t.equal(custom.pidfd_getfd, 'EACCES', 'seccomp=FILE: its errnoRet');
  t.equal(custom.clone_newuser, 'ok', 'seccomp=FILE replaces the default profile');
  const docker = probeResults((await probe(['--security-opt', `seccomp=${join(dir, 'default.json')}`])).stdout);
  t.equal(docker.clone_newuser, 'EPERM', "Docker's default.json as a file behaves as the default");
  if (onX64) {
    // A file with moby's archMap (x32 included) keeps it: an x32 syscall passes the filter to the kernel.
    const moby = probeResults((await probe(['--security-opt', `seccomp=${join(dir, 'moby.json')}`])).stdout);
    t.not(moby.x32_getpid, 'SIGSYS', 'a profile listing SCMP_ARCH_X32 lets x32 syscalls through');
    t.equal(moby.clone_newuser, 'EPERM');
  }
  const broken = await ctrSpawn(latest, ['--security-opt', `seccomp=${join(dir, 'broken.json')}`, '--', 'true']);
  t.equal(broken.code, 125, 'a bad profile fails before running');
  t.match(broken.stderr, /syscalls\[0\]\.action "SCMP_ACT_DENY" is not a seccomp action/);
});

t.test('--print-spec carries the translated profile', async (t) => {
  const r = await ctrSpawn(latest, ['--print-spec', '--cap-add', 'SYS_PTRACE']);
  t.equal(r.code, 0, r.stderr);
  const seccomp = JSON.parse(r.stdout).linux.seccomp as Seccomp;
  t.equal(verdict(seccomp, 'pidfd_getfd'), 'allow');
  t.equal(verdict(seccomp, 'unshare'), 'EPERM');
  const none = JSON.parse((await ctrSpawn(latest, ['--print-spec', '--privileged'])).stdout);
  t.notOk('seccomp' in none.linux, '--privileged: no filter');
});
