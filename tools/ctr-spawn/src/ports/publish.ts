/**
 * `-p/--publish` and `-P/--publish-all` into port mappings, Docker's forms
 * (nat.ParsePortSpec in docker/go-connections):
 *
 *   80                      container port 80 on a free host port, all addresses
 *   8080:80                 host port 8080, all addresses
 *   127.0.0.1:8080:80       host port 8080 on 127.0.0.1
 *   127.0.0.1::80           a free host port on 127.0.0.1
 *   [::1]:8080:80           an IPv6 host address, in brackets
 *   8000-8001:80-81         ranges of the same length, port by port
 *   8000-8010:80            the first free port of a host range
 *   80/udp, 8080:80/tcp     the protocol (tcp by default)
 *
 * Pure functions. A bad spec is an ERR_USAGE naming it (exit 125 in ctr-spawn).
 * An IPv6 address without brackets is refused: `::1:8080:80` has no one
 * reading. Ranges are capped at
 * MAX_RANGE ports, all mappings of a run at MAX_MAPPINGS, since each is a
 * socket held open for the container's life.
 */
import { ConveyorError } from '@conveyor/lib-common/errors';
import type { PortMapping, PortProtocol } from '@conveyor/lib-common/records';
import { isIP } from '@conveyor/lib-common/ip';

export type { PortProtocol };

export type { PortMapping };

/** Docker's default host address: every (IPv4) address of the host. */
export const ALL_ADDRESSES = '0.0.0.0';
/** Most ports one range may hold. */
export const MAX_RANGE = 1024;
/** Most mappings one container may have. */
export const MAX_MAPPINGS = 4096;

const usage = (spec: string, message: string, hint?: string) =>
  new ConveyorError('ERR_USAGE', `-p ${spec}: ${message}`, {
    hint: hint ?? 'forms: 80, 8080:80, 127.0.0.1:8080:80, 127.0.0.1::80, [::1]:8080:80, 8000-8001:80-81, 53:53/udp',
  });

/** A port or a range `A-B`; `allowZero` for a host port that may be left to the kernel. */
function portRange(spec: string, text: string, what: string): [number, number] {
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!match) throw usage(spec, `bad ${what} ${JSON.stringify(text)}`);
  const first = Number(match[1]);
  const last = match[2] === undefined ? first : Number(match[2]);
  for (const port of [first, last]) if (port < 1 || port > 65535) throw usage(spec, `${what} ${port} is out of range`, 'ports are 1 to 65535');
  if (last < first) throw usage(spec, `${what} range ${text} ends before it starts`);
  if (last - first + 1 > MAX_RANGE) throw usage(spec, `${what} range ${text} has more than ${MAX_RANGE} ports`);
  return [first, last];
}

/** The host address of a spec: an IPv4 address or an IPv6 one in brackets (stored without). */
function hostAddress(spec: string, text: string): string {
  const bracketed = /^\[(.*)\]$/.exec(text);
  const ip = bracketed ? bracketed[1] : text;
  // A zone (fe80::1%eth0) names an interface of the host: refused, as everything else not a plain address.
  const family = ip.includes('%') ? 0 : isIP(ip);
  if (family === 0) throw usage(spec, `bad host address ${JSON.stringify(text)}`, 'an IPv4 address, or an IPv6 one in brackets: [::1]:8080:80');
  if (family === 6 && !bracketed) throw usage(spec, `IPv6 address ${JSON.stringify(text)} needs brackets`, '[::1]:8080:80');
  return ip;
}

/** Parses one `-p` value into its mappings (more than one for a range). */
export function parsePublish(spec: string): PortMapping[] {
  if (spec.length > 200) throw usage(spec.slice(0, 40), 'too long');
  let rest = spec;
  let protocol: PortProtocol = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    const proto = rest.slice(slash + 1).toLowerCase();
    if (proto !== 'tcp' && proto !== 'udp') throw usage(spec, `unsupported protocol ${JSON.stringify(proto)}`, 'tcp or udp');
    protocol = proto;
    rest = rest.slice(0, slash);
  }
  // [IPv6]:HOST:CTR — the bracketed address first, so that its colons are not fields.
  let hostIP = ALL_ADDRESSES;
  const v6 = /^(\[[^\]]*\]):(.*)$/.exec(rest);
  let fields: string[];
  if (v6) {
    hostIP = hostAddress(spec, v6[1]);
    fields = v6[2].split(':');
    if (fields.length !== 2) throw usage(spec, 'expected [IP]:HOSTPORT:CONTAINERPORT');
  } else {
    fields = rest.split(':');
    if (fields.length > 3) throw usage(spec, 'too many fields', 'an IPv6 host address goes in brackets: [::1]:8080:80');
    if (fields.length === 3) hostIP = hostAddress(spec, fields.shift()!);
  }
  const containerText = fields.pop()!;
  const hostText = fields.length ? fields[0] : '';
  const [cFirst, cLast] = portRange(spec, containerText, 'container port');
  const count = cLast - cFirst + 1;
  if (hostText === '') {
    return Array.from({ length: count }, (_, i) => ({ hostIP, hostPort: 0, containerPort: cFirst + i, protocol }));
  }
  const [hFirst, hLast] = portRange(spec, hostText, 'host port');
  // A host range for one container port: any one free port of it (the forwarder picks the first).
  if (count === 1 && hLast > hFirst) return [{ hostIP, hostPort: hFirst, hostPortEnd: hLast, containerPort: cFirst, protocol }];
  if (hLast - hFirst + 1 !== count) {
    throw usage(spec, `host range ${hostText} and container range ${containerText} differ in length`, 'ranges map port by port: 8000-8001:80-81');
  }
  return Array.from({ length: count }, (_, i) => ({ hostIP, hostPort: hFirst + i, containerPort: cFirst + i, protocol }));
}

/**
 * `-P`: every port of the image's ExposedPorts (`{"80/tcp": {}, "53/udp": {}}`,
 * keys as Docker writes them, ranges too) on a free host port. The image is
 * not trusted: a key that is not a port is refused as a bad image config.
 */
export function publishAll(exposedPorts: unknown, hostIP = ALL_ADDRESSES): PortMapping[] {
  if (exposedPorts === undefined || exposedPorts === null) return [];
  if (typeof exposedPorts !== 'object' || Array.isArray(exposedPorts))
    throw new ConveyorError('ERR_INPUT_RECORD', 'the image config has ExposedPorts that is not an object');
  const mappings: PortMapping[] = [];
  for (const key of Object.keys(exposedPorts)) {
    const match = /^(\d{1,5}(?:-\d{1,5})?)(?:\/(tcp|udp|sctp))?$/i.exec(key);
    if (!match) throw new ConveyorError('ERR_INPUT_RECORD', `the image config exposes ${JSON.stringify(key.slice(0, 60))}, not a port`);
    // sctp has no forwarder here (nor in Docker's userland proxy): skipped, as a port that cannot be published.
    if (match[2]?.toLowerCase() === 'sctp') continue;
    let ports: PortMapping[];
    try {
      ports = parsePublish(`${match[1]}/${(match[2] ?? 'tcp').toLowerCase()}`);
    } catch (error) {
      throw new ConveyorError('ERR_INPUT_RECORD', `the image config's ExposedPorts: ${(error as Error).message}`);
    }
    mappings.push(...ports.map((m) => ({ ...m, hostIP })));
    if (mappings.length > MAX_MAPPINGS) throw new ConveyorError('ERR_INPUT_RECORD', `the image config exposes more than ${MAX_MAPPINGS} ports`);
  }
  return mappings;
}

/**
 * All of a run's mappings: -p ones, then -P's for container ports and
 * protocols no -p publishes (as Docker: an explicit -p wins). Duplicates of
 * one host address, port and protocol are refused here rather than found
 * taken by the forwarder.
 */
export function combineMappings(published: PortMapping[], all: PortMapping[] = []): PortMapping[] {
  const explicit = new Set(published.map((m) => `${m.containerPort}/${m.protocol}`));
  const mappings = [...published, ...all.filter((m) => !explicit.has(`${m.containerPort}/${m.protocol}`))];
  if (mappings.length > MAX_MAPPINGS) throw new ConveyorError('ERR_USAGE', `more than ${MAX_MAPPINGS} published ports`);
  const seen = new Set<string>();
  for (const m of mappings) {
    if (m.hostPort === 0) continue;
    const key = `${m.hostIP}|${m.hostPort}|${m.protocol}`;
    if (seen.has(key)) throw new ConveyorError('ERR_USAGE', `-p: ${formatHost(m)}/${m.protocol} is published twice`);
    seen.add(key);
  }
  return mappings;
}

/** `127.0.0.1:8080`, `[::1]:8080`. */
export function formatHost(m: Pick<PortMapping, 'hostIP' | 'hostPort' | 'hostPortEnd'>): string {
  return `${m.hostIP.includes(':') ? `[${m.hostIP}]` : m.hostIP}:${m.hostPort}${m.hostPortEnd ? `-${m.hostPortEnd}` : ''}`;
}
