/**
 * The scheme probe's TLS hello, without node:tls (issue 17): a ClientHello
 * (offering TLS 1.3 and 1.2) sent on a plain socket, and the reading of the
 * server's first byte. A TLS server answers any hello with a TLS record, a
 * handshake (0x16) or an alert (0x15): it speaks TLS, and the real request
 * then makes a real, verified handshake on node:tls. A plain-HTTP server
 * answers with `HTTP/1.x 400` or closes. So a plain-HTTP loopback registry
 * costs no node:tls or node:crypto (5 ms and more of CPU in a fresh process)
 * and no TLS context. Nothing here verifies anything: no request, and no
 * credential, goes out on this socket.
 *
 * Pure functions; they do not fail.
 */

const TLS_HANDSHAKE = 0x16;
const TLS_ALERT = 0x15;

function u16(n: number): Buffer {
  return Buffer.from([(n >> 8) & 0xff, n & 0xff]);
}

/** A vector with a 2-byte length prefix. */
function vector16(body: Buffer): Buffer {
  return Buffer.concat([u16(body.length), body]);
}

function extension(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), vector16(body)]);
}

/** TLS 1.3 suites, then ECDHE-GCM and ChaCha20 suites, then RSA ones: what servers of any age take. */
const CIPHER_SUITES = [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0x009c, 0x009d, 0x002f, 0x0035];
/** ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256, ecdsa_secp384r1_sha384, rsa_pss_rsae_sha384, rsa_pkcs1_sha384, rsa_pss_rsae_sha512, rsa_pkcs1_sha512. */
const SIGNATURE_ALGORITHMS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601];
/** x25519, secp256r1, secp384r1. */
const GROUPS = [0x001d, 0x0017, 0x0018];

/**
 * A TLS record holding a ClientHello. `random` gives the client random (32
 * bytes) and the x25519 key share (32 bytes): the handshake is never
 * finished, so they need no private key behind them. With `servername`
 * (a DNS name, not an IP address), the SNI extension names it.
 */
export function clientHello(random: (bytes: number) => Buffer, servername?: string): Buffer {
  const extensions = [
    ...(servername ? [extension(0x0000, vector16(Buffer.concat([Buffer.from([0]), vector16(Buffer.from(servername, 'ascii'))])))] : []),
    extension(0x000a, vector16(Buffer.concat(GROUPS.map(u16)))),
    // ec_point_formats: uncompressed.
    extension(0x000b, Buffer.from([0x01, 0x00])),
    extension(0x000d, vector16(Buffer.concat(SIGNATURE_ALGORITHMS.map(u16)))),
    // supported_versions: TLS 1.3, TLS 1.2.
    extension(0x002b, Buffer.from([0x04, 0x03, 0x04, 0x03, 0x03])),
    extension(0x0033, vector16(Buffer.concat([u16(0x001d), vector16(random(32))]))),
  ];
  const body = Buffer.concat([
    u16(0x0303),
    random(32),
    // No session id; the null compression method alone.
    Buffer.from([0x00]),
    vector16(Buffer.concat(CIPHER_SUITES.map(u16))),
    Buffer.from([0x01, 0x00]),
    vector16(Buffer.concat(extensions)),
  ]);
  const handshake = Buffer.concat([Buffer.from([0x01, (body.length >> 16) & 0xff, (body.length >> 8) & 0xff, body.length & 0xff]), body]);
  return Buffer.concat([Buffer.from([TLS_HANDSHAKE, 0x03, 0x01]), u16(handshake.length), handshake]);
}

/** Whether a server's first bytes in answer to the hello are TLS (a handshake or an alert record). */
export function answersTls(first: Buffer): boolean {
  return first.length > 0 && (first[0] === TLS_HANDSHAKE || first[0] === TLS_ALERT);
}
