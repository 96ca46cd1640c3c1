/**
 * The default seccomp filter: allow everything except the syscalls Docker's
 * default profile keeps from containers (docs.docker.com "Seccomp security
 * profiles for Docker", "Significant syscalls blocked"), each unblocked again
 * by the capability that legitimately needs it, as Docker does. A denylist,
 * not Docker's allowlist: smaller to audit, and what it blocks are the
 * kernel-attack-surface and host-affecting calls (keyrings, modules, kexec,
 * namespaces, mounts, bpf, perf, clock, swap, reboot).
 * clone3 answers ENOSYS so libc falls back to clone(2), whose namespace flags
 * stay governed by capabilities and the blocked unshare/setns.
 */

const EPERM = 1;
const ENOSYS = 38;

/** Blocked unless the container holds the capability (null: always blocked). */
const BLOCKED: [string | null, string[]][] = [
  [null, ['add_key', 'keyctl', 'request_key', 'uselib', 'ustat', 'sysfs', '_sysctl', 'vm86', 'vm86old', 'nfsservctl', 'create_module', 'get_kernel_syms', 'query_module', 'userfaultfd']],
  ['CAP_SYS_ADMIN', ['mount', 'umount', 'umount2', 'pivot_root', 'unshare', 'setns', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree', 'swapon', 'swapoff', 'quotactl', 'lookup_dcookie', 'name_to_handle_at', 'bpf', 'perf_event_open']],
  ['CAP_SYS_MODULE', ['init_module', 'finit_module', 'delete_module']],
  ['CAP_SYS_BOOT', ['reboot', 'kexec_load', 'kexec_file_load']],
  ['CAP_SYS_TIME', ['settimeofday', 'stime', 'clock_settime', 'clock_adjtime']],
  ['CAP_SYS_PTRACE', ['process_vm_readv', 'process_vm_writev', 'kcmp']],
  ['CAP_SYS_RAWIO', ['iopl', 'ioperm']],
  ['CAP_SYS_PACCT', ['acct']],
  ['CAP_SYS_NICE', ['get_mempolicy', 'set_mempolicy', 'mbind', 'move_pages']],
  ['CAP_DAC_READ_SEARCH', ['open_by_handle_at']],
  ['CAP_SYSLOG', ['syslog']],
];

const ARCHITECTURES: Record<string, string[]> = {
  x64: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
  arm64: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
  arm: ['SCMP_ARCH_ARM'],
  s390x: ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'],
  ppc64: ['SCMP_ARCH_PPC64LE'],
  riscv64: ['SCMP_ARCH_RISCV64'],
};

/** The blocked syscall names for a capability set. */
export function blockedSyscalls(capabilities: string[]): string[] {
  const held = new Set(capabilities);
  return BLOCKED.filter(([cap]) => cap === null || !held.has(cap)).flatMap(([, names]) => names);
}

/** An OCI `linux.seccomp` object for the given capabilities and Node arch name (process.arch). */
export function defaultSeccomp(capabilities: string[], arch: string): Record<string, unknown> {
  const blocked = blockedSyscalls(capabilities);
  const syscalls: Record<string, unknown>[] = [{ names: blocked, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM }];
  if (!capabilities.includes('CAP_SYS_ADMIN')) syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    ...(ARCHITECTURES[arch] ? { architectures: ARCHITECTURES[arch] } : {}),
    syscalls,
  };
}
