/**
 * ctr-ls's table for terminals, the columns `docker ps` prints: CONTAINER
 * ID, IMAGE, COMMAND, CREATED, STATUS, PORTS, NAMES, with Docker's wording ("Up 5
 * minutes", "Exited (0) 2 minutes ago", "127.0.0.1:8080->80/tcp"). Library code: records in, text out;
 * nothing fails.
 */
import type { ListedContainer } from '@conveyor/lib-common/container/targets';
import type { PortMapping } from '@conveyor/lib-common/records';
import { familiarName, parseReference } from '@conveyor/lib-common/reference';
import { formatTable } from '@conveyor/lib-common/table';

export const CONTAINER_TABLE_HEADERS = ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'];

/** Docker's units.HumanDuration: "Less than a second", "About a minute", "3 hours", "2 weeks". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3_600_000);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(hours / 24 / 365)} years`;
}

function since(iso: string | undefined, now: number): string | undefined {
  const then = iso ? Date.parse(iso) : Number.NaN;
  return Number.isNaN(then) ? undefined : humanDuration(Math.max(0, now - then));
}

/** The STATUS column: "Up 5 minutes", "Exited (137) 2 seconds ago", "Exited (unknown)", "Created", "Dead". */
export function statusText(container: ListedContainer, now = Date.now()): string {
  switch (container.status) {
    case 'running': {
      const up = since(container.startedAt ?? container.createdAt, now);
      return up ? `Up ${up}` : 'Up';
    }
    case 'exited': {
      const code = container.exitCode ?? 'unknown';
      const ago = since(container.finishedAt, now);
      return ago ? `Exited (${code}) ${ago} ago` : `Exited (${code})`;
    }
    case 'created':
      return 'Created';
    default:
      return 'Dead';
  }
}

/** Docker's COMMAND column: the command line quoted, cut to 20 characters with an ellipsis unless `full`. */
export function commandText(command: string[] | undefined, full = false): string {
  if (!command || command.length === 0) return '';
  const line = command.join(' ');
  const cut = full || [...line].length <= 20 ? line : `${[...line].slice(0, 19).join('')}…`;
  return JSON.stringify(cut);
}

/** The IMAGE column: the familiar reference (`busybox:latest`), or the short digest without one. */
export function imageText(container: ListedContainer, full = false): string {
  const ref = container.image;
  if (!ref) return '';
  if (/^sha256:[0-9a-f]{64}$/.test(ref)) return full ? ref : ref.slice(7, 19);
  try {
    return familiarName(parseReference(ref));
  } catch {
    return ref;
  }
}

/**
 * The PORTS column, as docker ps: `127.0.0.1:8080->80/tcp`, IPv6 hosts in
 * brackets, consecutive ports of one address and protocol as one range
 * (`0.0.0.0:8000-8001->80-81/tcp`), joined by ", ".
 */
export function portsText(ports: PortMapping[] | undefined): string {
  if (!ports || ports.length === 0) return '';
  const sorted = [...ports].sort((a, b) => a.hostIP.localeCompare(b.hostIP) || a.protocol.localeCompare(b.protocol) || a.containerPort - b.containerPort);
  const groups: { first: PortMapping; last: PortMapping }[] = [];
  for (const port of sorted) {
    const group = groups.at(-1);
    const next =
      group &&
      group.last.hostIP === port.hostIP &&
      group.last.protocol === port.protocol &&
      port.containerPort === group.last.containerPort + 1 &&
      port.hostPort === group.last.hostPort + 1;
    if (next) group.last = port;
    else groups.push({ first: port, last: port });
  }
  const range = (a: number, b: number) => (a === b ? `${a}` : `${a}-${b}`);
  return groups
    .map(({ first, last }) => {
      const host = first.hostIP.includes(':') ? `[${first.hostIP}]` : first.hostIP;
      return `${host}:${range(first.hostPort, last.hostPort)}->${range(first.containerPort, last.containerPort)}/${first.protocol}`;
    })
    .join(', ');
}

export function containerRow(container: ListedContainer, now = Date.now(), full = false): string[] {
  const created = since(container.createdAt, now);
  return [
    full ? container.id : container.id.slice(0, 12),
    imageText(container, full),
    commandText(container.command, full),
    created ? `${created} ago` : '',
    statusText(container, now),
    portsText(container.ports),
    container.name ?? '',
  ];
}

export function containerTable(containers: ListedContainer[], options: { now?: number; noTrunc?: boolean } = {}): string {
  const now = options.now ?? Date.now();
  return formatTable(
    CONTAINER_TABLE_HEADERS,
    containers.map((c) => containerRow(c, now, options.noTrunc)),
  );
}
