/**
 * A container's name files, written into its directory and bind-mounted
 * (writable unless --read-only: the container edits its copies, never the
 * host's): /etc/hostname, /etc/hosts (localhost, --add-host lines with
 * host-gateway resolved, the hostname on the container's address) and
 * /etc/resolv.conf (--dns, --dns-search, --dns-option, else the host's with
 * loopback resolvers left out, as Docker: they are the host's, not the
 * container's; when none remain, the network helper's resolver, else
 * Docker's fallback 8.8.8.8 and 8.8.4.4). Pure functions.
 */
import type { HostEntry } from '../options.js';
import { isIP } from '@conveyor/lib-common/ip';

/** Docker's fallback when the host has no resolver a container can use (libnetwork resolvconf). */
export const FALLBACK_DNS = ['8.8.8.8', '8.8.4.4'];
/** The address host-gateway stands for in an --add-host entry. */
export const HOST_GATEWAY = 'host-gateway';

export interface HostsInput {
  hostname: string;
  /** The container's address, where its hostname points (127.0.1.1 without one, as Debian). */
  address?: string;
  addHosts?: HostEntry[];
  /** What host-gateway resolves to. */
  gateway?: string;
}

export function hostsFile(input: HostsInput): string {
  const added = (input.addHosts ?? []).map((h) => {
    const ip = h.ip === HOST_GATEWAY ? input.gateway : h.ip;
    // options.ts refuses host-gateway where no gateway exists; reaching here without one is a bug.
    if (!ip) throw new Error(`[internal error] --add-host ${h.name}:${h.ip} without a gateway`);
    return `${ip}\t${h.name}\n`;
  });
  return `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${added.join('')}${input.address ?? '127.0.1.1'}\t${input.hostname}\n`;
}

export interface DnsOptions {
  /** --dns: nameservers. */
  servers?: string[];
  /** --dns-search: search domains ('.' alone: none). */
  search?: string[];
  /** --dns-option: `options` entries. */
  options?: string[];
}

/** Whether a nameserver address is on the loopback (127/8, ::1), so useless from another network namespace. */
function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || /^0*:(0*:)*0*1$/.test(address);
}

/** The parts of a resolv.conf: nameservers, search domains, options. */
export function parseResolvConf(text: string): { servers: string[]; search: string[]; options: string[] } {
  const parsed = { servers: [] as string[], search: [] as string[], options: [] as string[] };
  for (const raw of text.split('\n')) {
    const [key, ...values] = raw
      .replace(/[#;].*$/, '')
      .trim()
      .split(/\s+/);
    if (key === 'nameserver' && values[0] && isIP(values[0].replace(/%.*$/, '')) !== 0) parsed.servers.push(values[0]);
    // The last search or domain line wins, as in resolv.conf(5).
    else if ((key === 'search' || key === 'domain') && values.length > 0) parsed.search = values;
    else if (key === 'options') parsed.options.push(...values);
  }
  return parsed;
}

export interface ResolvInput {
  /** The host's /etc/resolv.conf ('' when it has none). */
  hostText: string;
  dns: DnsOptions;
  /** The container has the host's network: its loopback resolvers work there. */
  hostNetwork: boolean;
  /** A resolver the network helper answers on, used when the host leaves none. */
  helperDns?: string;
}

export function resolvConf(input: ResolvInput): string {
  const host = parseResolvConf(input.hostText);
  let servers = input.dns.servers?.length ? input.dns.servers : input.hostNetwork ? host.servers : host.servers.filter((s) => !isLoopback(s));
  if (servers.length === 0) servers = input.helperDns ? [input.helperDns] : FALLBACK_DNS;
  const searchGiven = input.dns.search?.length ? input.dns.search : host.search;
  const search = searchGiven.length === 1 && searchGiven[0] === '.' ? [] : searchGiven;
  const options = input.dns.options?.length ? input.dns.options : host.options;
  return [
    ...(search.length ? [`search ${search.join(' ')}`] : []),
    ...servers.map((s) => `nameserver ${s}`),
    ...(options.length ? [`options ${options.join(' ')}`] : []),
    '',
  ].join('\n');
}
