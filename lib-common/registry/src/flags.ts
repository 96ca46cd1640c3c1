/**
 * The flags every registry tool takes the same way (img-fetch's, first):
 * TLS and transport (`--insecure`, `--insecure-registry HOST` repeatable or
 * CONVEYOR_INSECURE_REGISTRIES, `--plain-http`, `--ca-file`, SSL_CERT_FILE),
 * the transfer-rate limits (`--min-rate`, `--rate-window` or their
 * CONVEYOR_* variables), and credentials from DOCKER_CONFIG looked up only
 * when a registry asks. `registryClientOptions` turns them into the options
 * of a RegistryClient, so tools build their client one way.
 *
 * Pure apart from the lazy credentials lookup it wires in; a bad value is
 * ERR_USAGE (exit 2). Imports nothing heavy: a tool's cli.ts may load it at
 * start-up.
 */
import { flag, parseBytes, type ArgSpec, type ParsedArgs } from '@conveyor/lib-common/args';
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { RegistryClientOptions } from './client.js';

/** The argument spec of these flags, to spread into a tool's own. */
export const REGISTRY_FLAGS = {
  string: ['ca-file', 'min-rate', 'rate-window'],
  multiple: ['insecure-registry'],
  boolean: ['insecure', 'plain-http'],
} satisfies ArgSpec;

/** Registry hosts from repeatable flag values and comma-separated lists; a scheme and trailing slashes are dropped. */
export function parseHostList(values: string[]): string[] {
  return values
    .flatMap((v) => v.split(','))
    .map((v) =>
      v
        .trim()
        .replace(/^https?:\/\//, '')
        .replace(/\/+$/, ''),
    )
    .filter((v) => v !== '');
}

/** --min-rate (`1k`, `2k/s`) and --rate-window (seconds, 0.1–3600); undefined keeps the client's default. */
export function transferLimits(minRate: string | undefined, window: string | undefined): { minRate?: number; rateWindowMs?: number } {
  const rate = minRate === undefined || minRate === '' ? undefined : parseBytes(minRate.replace(/\/s$/, ''), '--min-rate');
  let rateWindowMs: number | undefined;
  if (window !== undefined && window !== '') {
    const seconds = Number(window);
    if (!Number.isFinite(seconds) || seconds < 0.1 || seconds > 3600)
      throw new ConveyorError('ERR_USAGE', `--rate-window must be a number of seconds from 0.1 to 3600, got ${JSON.stringify(window)}`);
    rateWindowMs = Math.round(seconds * 1000);
  }
  return { minRate: rate, rateWindowMs };
}

/** RegistryClient options from the parsed REGISTRY_FLAGS and the environment (credentials loaded when first asked for). */
export function registryClientOptions(
  args: ParsedArgs,
  env: NodeJS.ProcessEnv,
  options: { userAgent: string; onRetry?: (message: string) => void },
): RegistryClientOptions {
  const limits = transferLimits(flag(args, 'min-rate') ?? env.CONVEYOR_MIN_RATE, flag(args, 'rate-window') ?? env.CONVEYOR_RATE_WINDOW);
  let credentialsModule: Promise<typeof import('./credentials.js')> | undefined;
  return {
    insecure: Boolean(args.insecure),
    insecureRegistries: parseHostList([...((args['insecure-registry'] as string[] | undefined) ?? []), env.CONVEYOR_INSECURE_REGISTRIES ?? '']),
    plainHttp: Boolean(args['plain-http']),
    caFile: flag(args, 'ca-file'),
    sslCertFile: env.SSL_CERT_FILE || undefined,
    credentials: async (registry) => {
      credentialsModule ??= import('./credentials.js');
      return (await credentialsModule).lookupCredentials(registry, { env });
    },
    userAgent: options.userAgent,
    minRate: limits.minRate,
    // The raw-socket path is the default (a pull's GETs and HEADs); 0 goes back to node:http for them.
    rawBlobs: env.CONVEYOR_RAW_BLOBS !== '0',
    rateWindowMs: limits.rateWindowMs,
    onRetry: options.onRetry,
  };
}
