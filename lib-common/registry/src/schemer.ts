/**
 * Scheme probing: which of https and http a registry speaks, learnt on the
 * first request to it and kept for the client's lifetime. HTTPS first; plain
 * HTTP when `plainHttp` says so, or as a fallback when the server answers the
 * TLS hello with something that is not TLS and plain HTTP is an accepted risk
 * for that registry (loopback, `--insecure`, `--insecure-registry`), as
 * Docker does. There a bare TLS hello (Transport.speaksTls) decides before
 * the request is sent. A certificate that fails verification is never a
 * reason to fall back.
 *
 * On failure the probe rejects with the transport's error (the hello's, or
 * the request's on the scheme the hello chose), for error-map.ts to
 * map; the scheme stays unknown, so the next request probes again.
 */
import { isLoopbackRegistry } from '@conveyor/lib-common/reference';
import type { Transport } from './transport.js';

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

  /**
   * The first request to a registry: HTTPS, falling back to HTTP where that
   * is allowed. `send` makes the request on the URL chosen (the transport's
   * send, or sendRaw for a blob). Records the scheme that answered.
   */
  async probe<R>(registry: string, url: URL, send: (url: URL) => Promise<R>): Promise<R> {
    if (url.protocol === 'http:' || !this.acceptsPlainHttp(registry)) {
      const res = await send(url);
      this.schemes.set(registry, url.protocol === 'http:' ? 'http' : 'https');
      return res;
    }
    // A bare TLS hello first: a plain-HTTP registry then costs no CA bundle,
    // and no request (with its credentials) goes out before the scheme is known.
    const tls = await this.transport.speaksTls(url);
    const res = await send(tls ? url : new URL(url.href.replace(/^https:/, 'http:')));
    this.schemes.set(registry, tls ? 'https' : 'http');
    return res;
  }
}
