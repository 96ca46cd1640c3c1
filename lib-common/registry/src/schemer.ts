/**
 * Scheme probing: which of https and http a registry speaks, learnt on the
 * first request to it and kept for the client's lifetime. HTTPS first; plain
 * HTTP when `plainHttp` says so, or as a fallback when the server answers the
 * TLS hello with something that is not TLS and plain HTTP is an accepted risk
 * for that registry (loopback, `--insecure`, `--insecure-registry`), as
 * Docker does. A certificate that fails verification is never a reason to
 * fall back.
 *
 * On failure the probe rejects with the transport's error (the TLS error when
 * no fallback is allowed, else the plain-HTTP attempt's), for error-map.ts to
 * map; the scheme stays unknown, so the next request probes again.
 */
import type { IncomingMessage } from 'node:http';
import { isLoopbackRegistry } from '@conveyor/lib-common/reference';
import { isNotTlsError, type Transport } from './transport.js';

export type Scheme = 'https' | 'http';

export class Schemer {
  private readonly schemes = new Map<string, Scheme>();

  constructor(
    private readonly transport: Transport,
    private readonly plainHttp: boolean,
  ) {}

  /** The scheme a registry was reached with, once a first request told. */
  known(registry: string): Scheme | undefined {
    return this.schemes.get(registry);
  }

  /** The scheme to try first: the known one, else http with `plainHttp`, else https. */
  first(registry: string): Scheme {
    return this.schemes.get(registry) ?? (this.plainHttp ? 'http' : 'https');
  }

  /**
   * Where plain HTTP is already the user's accepted risk, the registries
   * Docker calls insecure: `--plain-http`, `--insecure`,
   * `--insecure-registry` (Docker's insecure-registries), and loopback
   * registries (Docker lists 127.0.0.0/8 as insecure by default).
   */
  acceptsPlainHttp(registry: string): boolean {
    return this.plainHttp || this.transport.isInsecure(registry) || isLoopbackRegistry(registry);
  }

  /** The first request to a registry: HTTPS, falling back to HTTP where that is allowed. Records the scheme that answered. */
  async probe(registry: string, url: URL, method: string, headers: Record<string, string>, signal?: AbortSignal): Promise<IncomingMessage> {
    if (url.protocol === 'http:') {
      const res = await this.transport.send(url, method, headers, signal);
      this.schemes.set(registry, 'http');
      return res;
    }
    try {
      const res = await this.transport.send(url, method, headers, signal);
      this.schemes.set(registry, 'https');
      return res;
    } catch (error) {
      if (!this.acceptsPlainHttp(registry) || !isNotTlsError(error)) throw error;
      const plain = new URL(url.href.replace(/^https:/, 'http:'));
      const res = await this.transport.send(plain, method, headers, signal);
      this.schemes.set(registry, 'http');
      return res;
    }
  }
}
