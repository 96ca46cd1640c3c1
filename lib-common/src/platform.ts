import { ConveyorError } from './errors.js';
import type { Platform } from './records.js';

const NODE_TO_OCI_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

/** The platform this machine runs, in OCI terms. */
export function hostPlatform(): Platform {
  const architecture = NODE_TO_OCI_ARCH[process.arch] ?? process.arch;
  const platform: Platform = { os: process.platform === 'win32' ? 'windows' : process.platform, architecture };
  if (architecture === 'arm64') platform.variant = 'v8';
  return platform;
}

/** Parses `os/arch[/variant]` as docker --platform does. */
export function parsePlatform(text: string): Platform {
  const parts = text.trim().toLowerCase().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new ConveyorError('ERR_PLATFORM_INVALID', `invalid platform ${JSON.stringify(text)}`, {
      hint: 'use OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm/v7',
    });
  }
  const platform: Platform = { os: parts[0], architecture: parts[1] === 'x86_64' ? 'amd64' : parts[1] === 'aarch64' ? 'arm64' : parts[1] };
  if (parts[2]) platform.variant = parts[2];
  return platform;
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/**
 * Whether an index entry's platform satisfies the wanted one. A wanted variant
 * must match; arm64 treats a missing variant as v8, as containerd does.
 */
export function platformMatches(candidate: Platform | undefined, wanted: Platform): boolean {
  if (!candidate) return false;
  if (candidate.os !== wanted.os || candidate.architecture !== wanted.architecture) return false;
  if (!wanted.variant) return true;
  const variant = candidate.variant ?? (candidate.architecture === 'arm64' ? 'v8' : undefined);
  return variant === wanted.variant;
}
