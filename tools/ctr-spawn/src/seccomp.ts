/**
 * Seccomp: Docker's default profile as data, Docker's profile format for
 * `--security-opt seccomp=FILE`, and the translation of either into the OCI
 * `linux.seccomp` that runc loads.
 *
 * The default is an allowlist: every syscall not listed fails with EPERM.
 * DEFAULT_PROFILE follows moby's profiles/seccomp/default.json as Docker 25+
 * ships it (io_uring_* no longer allowed, moby#46762) with the 2026 socket
 * rules that refuse AF_ALG (38) and AF_VSOCK (40) (moby#52494). Its groups
 * keep default.json's order and conditions so the two can be diffed by eye:
 * a group with `includes.caps` is allowed only when the container holds every
 * listed capability; `excludes.caps` drops a group when it holds any; `arches`
 * select by Docker's architecture names (amd64, arm64, ...); `minKernel`
 * compares with the running kernel. clone is allowed only without the
 * namespace flags (masked by 0x7E020000: CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|
 * NEWUSER|NEWPID|NEWNET) unless CAP_SYS_ADMIN; clone3 cannot be filtered by
 * flags (they sit behind a pointer), so it answers ENOSYS and libc falls back
 * to clone.
 *
 * One departure from default.json: on amd64 the filter covers x86_64 and
 * 32-bit x86 but not x32 (moby lists SCMP_ARCH_X32 too). runc builds the
 * filter with libseccomp in every container's init, and each architecture
 * costs: with x32, libseccomp's program has 984 BPF instructions instead of
 * 692 and runc spends about 10 ms more CPU per container (of ~70 ms; runc
 * 1.1.5, libseccomp 2.5.4). x32 has no userland on any distribution, and
 * most distribution kernels do not enable the x32 ABI (this machine's is
 * built without CONFIG_X86_X32_ABI), so every x32 syscall fails with ENOSYS
 * there anyway. Leaving it out denies rather than allows: libseccomp's
 * bad-architecture action kills the calling thread with SIGSYS. 32-bit x86
 * programs (i386 images) keep running, as in Docker. A profile file
 * (--security-opt seccomp=FILE) keeps the architectures it lists.
 */
import { release } from 'node:os';
import { ConveyorError } from '@conveyor/lib-common/errors';

const EPERM = 1;
const ENOSYS = 38;

/** One argument comparison, as in Docker's JSON and the OCI spec. */
export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

export interface SeccompFilter {
  caps?: string[];
  arches?: string[];
  minKernel?: string;
}

/** One syscall group of a Docker profile. */
export interface DockerSyscallRule {
  names?: string[];
  /** Deprecated single-name form; Docker refuses it together with names. */
  name?: string;
  action: string;
  errnoRet?: number;
  args?: SeccompArg[] | null;
  includes?: SeccompFilter;
  excludes?: SeccompFilter;
  comment?: string;
}

/** A profile in Docker's format (moby profiles/seccomp, `docker run --security-opt seccomp=FILE`). */
export interface DockerProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  archMap?: { architecture: string; subArchitectures: string[] | null }[];
  listenerPath?: string;
  listenerMetadata?: string;
  flags?: string[];
  syscalls?: DockerSyscallRule[];
}

const words = (text: string): string[] => text.trim().split(/\s+/);
const allow = (names: string, more: Omit<DockerSyscallRule, 'names' | 'action'> = {}): DockerSyscallRule => ({
  names: words(names),
  action: 'SCMP_ACT_ALLOW',
  ...more,
});
const argRule = (index: number, op: string, value: number): SeccompArg[] => [{ index, value, op }];
const CLONE_NAMESPACE_FLAGS = 0x7e020000;

export const DEFAULT_PROFILE: DockerProfile = {
  defaultAction: 'SCMP_ACT_ERRNO',
  defaultErrnoRet: EPERM,
  archMap: [
    // Not SCMP_ARCH_X32: see the header.
    { architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86'] },
    { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: ['SCMP_ARCH_ARM'] },
    { architecture: 'SCMP_ARCH_MIPS64', subArchitectures: ['SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64N32'] },
    { architecture: 'SCMP_ARCH_MIPS64N32', subArchitectures: ['SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64'] },
    { architecture: 'SCMP_ARCH_MIPSEL64', subArchitectures: ['SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64N32'] },
    { architecture: 'SCMP_ARCH_MIPSEL64N32', subArchitectures: ['SCMP_ARCH_MIPSEL', 'SCMP_ARCH_MIPSEL64'] },
    { architecture: 'SCMP_ARCH_S390X', subArchitectures: ['SCMP_ARCH_S390'] },
    { architecture: 'SCMP_ARCH_RISCV64', subArchitectures: null },
  ],
  syscalls: [
    allow(`
      accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
      clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
      clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
      epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
      eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
      fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
      flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
      ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents getdents64
      getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername
      getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
      getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
      gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1 inotify_rm_watch
      io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set
      io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
      lchown lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek
      lsetxattr lstat lstat64 madvise membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod
      mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
      mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget msgrcv
      msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open
      openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect
      poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
      pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom
      recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
      restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
      rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
      sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
      sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
      sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
      sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
      setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32
      setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
      set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown
      sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
      statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
      timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
      timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
      times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
      utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev`),
    // Before 4.8 ptrace could bypass seccomp.
    allow('process_vm_readv process_vm_writev ptrace', { includes: { minKernel: '4.8' } }),
    // Every address family but AF_ALG (38) and AF_VSOCK (40): three rules, as
    // two conditions in one rule would be ANDed on the same argument.
    allow('socket', { args: argRule(0, 'SCMP_CMP_LT', 38) }),
    allow('socket', { args: argRule(0, 'SCMP_CMP_EQ', 39) }),
    allow('socket', { args: argRule(0, 'SCMP_CMP_GT', 40) }),
    // PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and 0xffffffff (query).
    ...[0x0, 0x8, 0x20000, 0x20008, 0xffffffff].map((value) => allow('personality', { args: argRule(0, 'SCMP_CMP_EQ', value) })),
    allow('sync_file_range2 swapcontext', { includes: { arches: ['ppc64le'] } }),
    allow('arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls', { includes: { arches: ['arm', 'arm64'] } }),
    allow('arch_prctl', { includes: { arches: ['amd64', 'x32'] } }),
    allow('modify_ldt', { includes: { arches: ['amd64', 'x32', 'x86'] } }),
    allow('s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr', { includes: { arches: ['s390', 's390x'] } }),
    allow('riscv_flush_icache', { includes: { arches: ['riscv64'] } }),
    allow('open_by_handle_at', { includes: { caps: ['CAP_DAC_READ_SEARCH'] } }),
    allow(
      `
      bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr
      move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog
      umount umount2 unshare`,
      { includes: { caps: ['CAP_SYS_ADMIN'] } },
    ),
    allow('clone', { args: argRule(0, 'SCMP_CMP_MASKED_EQ', CLONE_NAMESPACE_FLAGS), excludes: { caps: ['CAP_SYS_ADMIN'], arches: ['s390', 's390x'] } }),
    allow('clone', {
      args: argRule(1, 'SCMP_CMP_MASKED_EQ', CLONE_NAMESPACE_FLAGS),
      comment: 's390 parameter ordering for clone is different',
      includes: { arches: ['s390', 's390x'] },
      excludes: { caps: ['CAP_SYS_ADMIN'] },
    }),
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS, excludes: { caps: ['CAP_SYS_ADMIN'] } },
    allow('reboot', { includes: { caps: ['CAP_SYS_BOOT'] } }),
    allow('chroot', { includes: { caps: ['CAP_SYS_CHROOT'] } }),
    allow('delete_module init_module finit_module', { includes: { caps: ['CAP_SYS_MODULE'] } }),
    allow('acct', { includes: { caps: ['CAP_SYS_PACCT'] } }),
    allow('kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace', { includes: { caps: ['CAP_SYS_PTRACE'] } }),
    allow('iopl ioperm', { includes: { caps: ['CAP_SYS_RAWIO'] } }),
    allow('settimeofday stime clock_settime clock_settime64', { includes: { caps: ['CAP_SYS_TIME'] } }),
    allow('vhangup', { includes: { caps: ['CAP_SYS_TTY_CONFIG'] } }),
    allow('get_mempolicy mbind set_mempolicy set_mempolicy_home_node', { includes: { caps: ['CAP_SYS_NICE'] } }),
    allow('syslog', { includes: { caps: ['CAP_SYSLOG'] } }),
    allow('bpf', { includes: { caps: ['CAP_BPF'] } }),
    allow('perf_event_open', { includes: { caps: ['CAP_PERFMON'] } }),
  ],
};

/** Node's process.arch → the architecture names Docker's profiles use (Go's GOARCH, mapped as moby does). */
const DOCKER_ARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: 'x86',
  arm: 'arm',
  arm64: 'arm64',
  ppc: 'ppc',
  ppc64: 'ppc64le',
  s390: 's390',
  s390x: 's390x',
  mips: 'mips',
  mipsel: 'mipsle',
  mips64: 'mips64',
  mips64el: 'mipsel64',
  riscv64: 'riscv64',
};

/** Docker's architecture name → the native libseccomp architecture an archMap entry is chosen by. */
const NATIVE_SCMP_ARCH: Record<string, string> = {
  x86: 'SCMP_ARCH_X86',
  amd64: 'SCMP_ARCH_X86_64',
  arm: 'SCMP_ARCH_ARM',
  arm64: 'SCMP_ARCH_AARCH64',
  mips64: 'SCMP_ARCH_MIPS64',
  mipsel64: 'SCMP_ARCH_MIPSEL64',
  mipsle: 'SCMP_ARCH_MIPSEL',
  ppc: 'SCMP_ARCH_PPC',
  ppc64le: 'SCMP_ARCH_PPC64LE',
  s390: 'SCMP_ARCH_S390',
  s390x: 'SCMP_ARCH_S390X',
  riscv64: 'SCMP_ARCH_RISCV64',
};

/** -1, 0, 1 comparing "major.minor[.patch]" kernel releases (suffixes such as -generic ignored). */
function compareKernel(a: string, b: string): number {
  const parse = (v: string) => (v.match(/^(\d+)(?:\.(\d+))?(?:\.(\d+))?/) ?? []).slice(1, 4).map((n) => Number(n ?? 0));
  const [x, y] = [parse(a), parse(b)];
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  return 0;
}

export interface SeccompContext {
  /** The container's capabilities (its bounding set, as Docker checks). */
  capabilities: string[];
  /** Node's process.arch. */
  arch: string;
  /** The running kernel's release (os.release()). */
  kernel?: string;
}

/**
 * Docker's profile → OCI `linux.seccomp`, filtered for this container the way
 * dockerd does it (moby profiles/seccomp setupSeccomp): includes/excludes by
 * capability, architecture and kernel are resolved here, so the spec holds
 * only the rules that apply. Returns undefined for an empty profile (Docker:
 * no default action and no syscalls means unconfined).
 */
export function translateProfile(profile: DockerProfile, context: SeccompContext): Record<string, unknown> | undefined {
  if (!profile.defaultAction && (profile.syscalls ?? []).length === 0) return undefined;
  if ((profile.architectures ?? []).length > 0 && (profile.archMap ?? []).length > 0) {
    throw new ConveyorError('ERR_USAGE', 'seccomp profile: both architectures and archMap are set', { hint: 'use one of them, as Docker requires' });
  }
  const arch = DOCKER_ARCH[context.arch] ?? context.arch;
  const kernel = context.kernel ?? release();
  const caps = new Set(context.capabilities);
  let architectures = [...(profile.architectures ?? [])];
  const native = NATIVE_SCMP_ARCH[arch];
  const mapped = native ? profile.archMap?.find((a) => a.architecture === native) : undefined;
  if (mapped) architectures = [mapped.architecture, ...(mapped.subArchitectures ?? [])];

  const syscalls: Record<string, unknown>[] = [];
  for (const rule of profile.syscalls ?? []) {
    const { includes: inc = {}, excludes: exc = {} } = rule;
    if (exc.arches?.includes(arch)) continue;
    if (exc.caps?.some((c) => caps.has(c))) continue;
    if (exc.minKernel && compareKernel(kernel, exc.minKernel) >= 0) continue;
    if (inc.arches?.length && !inc.arches.includes(arch)) continue;
    if (inc.caps?.some((c) => !caps.has(c))) continue;
    if (inc.minKernel && compareKernel(kernel, inc.minKernel) < 0) continue;
    if (rule.name && rule.names?.length) {
      throw new ConveyorError('ERR_USAGE', `seccomp profile: a rule has both name (${rule.name}) and names`, { hint: 'use names, as Docker requires' });
    }
    syscalls.push({
      names: rule.name ? [rule.name] : rule.names,
      action: rule.action,
      ...(rule.errnoRet !== undefined ? { errnoRet: rule.errnoRet } : {}),
      ...(rule.args?.length
        ? { args: rule.args.map((a) => ({ index: a.index, value: a.value, ...(a.valueTwo ? { valueTwo: a.valueTwo } : {}), op: a.op })) }
        : {}),
    });
  }
  return {
    defaultAction: profile.defaultAction,
    ...(profile.defaultErrnoRet !== undefined ? { defaultErrnoRet: profile.defaultErrnoRet } : {}),
    ...(architectures.length > 0 ? { architectures } : {}),
    ...(profile.listenerPath ? { listenerPath: profile.listenerPath } : {}),
    ...(profile.listenerMetadata ? { listenerMetadata: profile.listenerMetadata } : {}),
    ...(profile.flags?.length ? { flags: profile.flags } : {}),
    syscalls,
  };
}

/** The OCI `linux.seccomp` for a container: Docker's default profile, or `profile` (--security-opt seccomp=FILE). */
export function defaultSeccomp(
  capabilities: string[],
  arch: string,
  profile: DockerProfile = DEFAULT_PROFILE,
  kernel?: string,
): Record<string, unknown> | undefined {
  return translateProfile(profile, { capabilities, arch, kernel });
}

const ACTIONS = [
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
  'SCMP_ACT_NOTIFY',
];
const OPS = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'];

/**
 * Checks a parsed profile file against Docker's format, so a typo fails here
 * with the field named instead of in runc (or, worse, not at all: an unknown
 * action would make runc refuse the whole container with a generic message).
 */
export function parseProfile(text: string, source: string): DockerProfile {
  const fail = (why: string): never => {
    throw new ConveyorError('ERR_USAGE', `--security-opt seccomp=${source}: ${why}`, {
      hint: "a profile in Docker's format, e.g. moby's profiles/seccomp/default.json",
    });
  };
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    return fail(`not JSON: ${(error as Error).message}`);
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) return fail('not a JSON object');
  const p = data as Record<string, unknown>;
  const isStrings = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === 'string');
  const isUint = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 64;
  if (typeof p.defaultAction !== 'string' || (p.defaultAction !== '' && !ACTIONS.includes(p.defaultAction)))
    fail(`defaultAction ${JSON.stringify(p.defaultAction)} is not a seccomp action`);
  if (p.defaultErrnoRet !== undefined && p.defaultErrnoRet !== null && !isUint(p.defaultErrnoRet)) fail('defaultErrnoRet must be an errno number');
  if (p.architectures !== undefined && p.architectures !== null && !isStrings(p.architectures)) fail('architectures must be a list of names');
  if (p.archMap !== undefined && p.archMap !== null) {
    if (!Array.isArray(p.archMap)) fail('archMap must be a list');
    for (const entry of p.archMap as Record<string, unknown>[]) {
      if (!entry || typeof entry.architecture !== 'string') fail('archMap entries need an architecture');
      if (entry.subArchitectures !== undefined && entry.subArchitectures !== null && !isStrings(entry.subArchitectures))
        fail('subArchitectures must be a list of names');
    }
  }
  if (p.syscalls !== undefined && p.syscalls !== null && !Array.isArray(p.syscalls)) fail('syscalls must be a list');
  ((p.syscalls ?? []) as Record<string, unknown>[]).forEach((rule, i) => {
    const where = `syscalls[${i}]`;
    if (!rule || typeof rule !== 'object') fail(`${where} is not an object`);
    if (rule.names !== undefined && rule.names !== null && !isStrings(rule.names)) fail(`${where}.names must be a list of syscall names`);
    if (rule.name !== undefined && typeof rule.name !== 'string') fail(`${where}.name must be a string`);
    if (!(rule.names as string[] | undefined)?.length && !rule.name) fail(`${where} names no syscall`);
    if (typeof rule.action !== 'string' || !ACTIONS.includes(rule.action)) fail(`${where}.action ${JSON.stringify(rule.action)} is not a seccomp action`);
    if (rule.errnoRet !== undefined && rule.errnoRet !== null && !isUint(rule.errnoRet)) fail(`${where}.errnoRet must be an errno number`);
    if (rule.args !== undefined && rule.args !== null) {
      if (!Array.isArray(rule.args)) fail(`${where}.args must be a list`);
      for (const arg of rule.args as Record<string, unknown>[]) {
        if (!arg || !isUint(arg.index) || (arg.index as number) > 5) fail(`${where}.args: index must be 0-5`);
        if (!isUint(arg.value) || (arg.valueTwo !== undefined && !isUint(arg.valueTwo))) fail(`${where}.args: value must be a non-negative integer`);
        if (typeof arg.op !== 'string' || !OPS.includes(arg.op)) fail(`${where}.args: op ${JSON.stringify(arg.op)} is not a comparison`);
      }
    }
    for (const key of ['includes', 'excludes'] as const) {
      const f = rule[key] as Record<string, unknown> | undefined | null;
      if (f === undefined || f === null) continue;
      if (typeof f !== 'object') fail(`${where}.${key} must be an object`);
      if (f.caps !== undefined && f.caps !== null && !isStrings(f.caps)) fail(`${where}.${key}.caps must be a list of capability names`);
      if (f.arches !== undefined && f.arches !== null && !isStrings(f.arches)) fail(`${where}.${key}.arches must be a list of names`);
      if (f.minKernel !== undefined && f.minKernel !== null && !(typeof f.minKernel === 'string' && /^\d+\.\d+/.test(f.minKernel)))
        fail(`${where}.${key}.minKernel must look like 4.8`);
    }
  });
  // null where Docker's Go decoder sees an empty value.
  const clean = (f: unknown): SeccompFilter | undefined => {
    if (!f || typeof f !== 'object') return undefined;
    const { caps, arches, minKernel } = f as Record<string, unknown>;
    return {
      ...(caps ? { caps: caps as string[] } : {}),
      ...(arches ? { arches: arches as string[] } : {}),
      ...(minKernel ? { minKernel: minKernel as string } : {}),
    };
  };
  return {
    defaultAction: p.defaultAction as string,
    ...(typeof p.defaultErrnoRet === 'number' ? { defaultErrnoRet: p.defaultErrnoRet } : {}),
    ...(p.architectures ? { architectures: p.architectures as string[] } : {}),
    ...(p.archMap ? { archMap: p.archMap as DockerProfile['archMap'] } : {}),
    ...(typeof p.listenerPath === 'string' ? { listenerPath: p.listenerPath } : {}),
    ...(typeof p.listenerMetadata === 'string' ? { listenerMetadata: p.listenerMetadata } : {}),
    ...(isStrings(p.flags) ? { flags: p.flags as string[] } : {}),
    syscalls: ((p.syscalls ?? []) as Record<string, unknown>[]).map((r) => ({
      ...(r.names ? { names: r.names as string[] } : {}),
      ...(r.name ? { name: r.name as string } : {}),
      action: r.action as string,
      ...(typeof r.errnoRet === 'number' ? { errnoRet: r.errnoRet } : {}),
      ...(r.args ? { args: r.args as SeccompArg[] } : {}),
      ...(clean(r.includes) ? { includes: clean(r.includes) } : {}),
      ...(clean(r.excludes) ? { excludes: clean(r.excludes) } : {}),
    })),
  };
}
