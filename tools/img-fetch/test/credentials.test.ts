/**
 * Where credentials may go (issue 7, "Credentials"): a token realm on plain
 * HTTP named by an HTTPS registry that is not loopback gets no password (an
 * anonymous token request, then a clear ERR_REGISTRY_UNAUTHORIZED), unless
 * the registry is marked insecure; an https → http redirect on the same
 * host and port carries no Authorization.
 *
 * The non-loopback registry is a TLS fault proxy bound to this machine's
 * first non-internal IPv4 address, in front of a real registry whose token
 * realm is the test issuer's http://127.0.0.1 URL.
 */
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import { pushImage, rawManifest, startFaultProxy, startRegistry, type FaultAction, type ProxiedRequest } from '../../../test/helpers/registry.js';
import { runFetch } from './run.js';

const basic = (creds: string) => `Basic ${Buffer.from(creds).toString('base64')}`;
const errorOf = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error');

function dockerConfig(dir: string, host: string, creds: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: { [host]: { auth: Buffer.from(creds).toString('base64') } } }));
  return dir;
}

const outside = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;

t.test(
  'a plain-HTTP token realm named by an HTTPS registry gets no credentials',
  { skip: outside ? false : 'no non-loopback IPv4 address on this machine' },
  async (t) => {
    const reg = await startRegistry({ token: { users: { dave: 'hunter2' } } });
    t.teardown(() => reg.stop());
    await pushImage(`${busyboxLayout()}:latest`, reg, 'bb:latest');
    t.match(reg.tokenIssuer!.realm, /^http:\/\//, 'the realm is plain HTTP');
    const proxy = await startFaultProxy(`http://${reg.host}`, () => ({ kind: 'pass' }), { tls: true, bind: outside });
    t.teardown(() => proxy.stop());
    const dir = t.testdir();
    const config = dockerConfig(join(dir, 'docker'), proxy.host, 'dave:hunter2');
    let runs = 0;
    const run = (extra: string[] = []) =>
      runFetch(['--root', join(dir, `store${runs++}`), '--log-format=json', '--ca-file', proxy.caFile!, ...extra, `${proxy.host}/bb:latest`], {
        env: { DOCKER_CONFIG: config },
      });

    t.test('withheld: the token request is anonymous and the refusal says why', async (t) => {
      const before = reg.tokenIssuer!.requests.length;
      const r = await run();
      t.equal(r.code, 1, r.stderr);
      const error = errorOf(r.logs);
      t.equal(error?.code, 'ERR_REGISTRY_UNAUTHORIZED');
      t.match(error?.message, /not sent because .* plain HTTP/);
      t.match(error?.hint, new RegExp(`--insecure-registry ${proxy.host}`));
      const asked = reg.tokenIssuer!.requests.slice(before);
      t.ok(asked.length > 0, 'the token server was asked');
      t.strictSame(
        asked.map((q) => q.authorization),
        asked.map(() => undefined),
        'never with the password',
      );
    });

    t.test('withheld, a registry that serves anonymous pulls still pulls', async (t) => {
      const open = await startRegistry({ token: { users: { dave: 'hunter2' }, anonymousPull: true } });
      t.teardown(() => open.stop());
      await pushImage(`${busyboxLayout()}:latest`, open, 'bb:latest');
      const front = await startFaultProxy(`http://${open.host}`, () => ({ kind: 'pass' }), { tls: true, bind: outside });
      t.teardown(() => front.stop());
      const before = open.tokenIssuer!.requests.length;
      const r = await runFetch(['--root', join(dir, 'open'), '--log-format=json', '--ca-file', front.caFile!, `${front.host}/bb:latest`], {
        env: { DOCKER_CONFIG: dockerConfig(join(dir, 'docker-open'), front.host, 'dave:hunter2') },
      });
      t.equal(r.code, 0, r.stderr);
      const asked = open.tokenIssuer!.requests.slice(before);
      t.ok(asked.length > 0, 'the token server was asked');
      t.ok(
        asked.every((q) => q.authorization === undefined),
        'anonymously only',
      );
    });

    t.test('an insecure registry (the user accepts plain HTTP there) sends them', async (t) => {
      const before = reg.tokenIssuer!.requests.length;
      const r = await run(['--insecure-registry', proxy.host]);
      t.equal(r.code, 0, r.stderr);
      t.equal(reg.tokenIssuer!.requests.slice(before)[0]?.authorization, basic('dave:hunter2'));
    });
  },
);

t.test('an https → http redirect on the same host:port carries no Authorization', async (t) => {
  const reg = await startRegistry({ htpasswd: { carol: 'pa55' } });
  t.teardown(() => reg.stop());
  await pushImage(`${busyboxLayout()}:latest`, reg, 'bb:latest');
  const layer = JSON.parse((await rawManifest(reg, 'bb:latest')).body.toString('utf8')).layers[0].digest as string;
  const isLayerGet = (q: ProxiedRequest) => q.method === 'GET' && q.url === `/v2/bb/blobs/${layer}`;
  const proxy = await startFaultProxy(`http://${reg.host}`, () => ({ kind: 'pass' }), { tls: true });
  t.teardown(() => proxy.stop());
  const dir = t.testdir();
  const config = dockerConfig(join(dir, 'docker'), proxy.host, 'carol:pa55');
  const cases = [
    // The proxy supplies the password the registry wants, so the pull succeeds
    // on what the client itself must not send in clear.
    { name: 'the pull succeeds', supply: true, code: 0 },
    // A 401 from the http:// hop is not the registry's challenge: answering it
    // would send the password in clear after all.
    { name: 'a 401 on the plain hop is not answered with the password', supply: false, code: 1, error: 'ERR_REGISTRY_UNAUTHORIZED' },
  ];
  for (const [i, c] of cases.entries()) {
    t.test(c.name, async (t) => {
      const start = proxy.requests.length;
      proxy.rule = (q): FaultAction => {
        if (!isLayerGet(q)) return { kind: 'pass' };
        if (q.scheme === 'https') return { kind: 'redirect', status: 307, location: `http://${proxy.host}${q.url}` };
        return c.supply ? { kind: 'pass', headers: { authorization: basic('carol:pa55') } } : { kind: 'pass' };
      };
      const r = await runFetch(['--root', join(dir, `store${i}`), '--log-format=json', '--ca-file', proxy.caFile!, `${proxy.host}/bb:latest`], {
        env: { DOCKER_CONFIG: config },
      });
      t.equal(r.code, c.code, r.stderr);
      if (c.error) t.equal(errorOf(r.logs)?.code, c.error);
      const gets = proxy.requests.slice(start).filter(isLayerGet);
      t.strictSame([...new Set(gets.map((q) => q.scheme))], ['https', 'http'], 'redirected from https to http on the same host:port');
      t.ok(
        gets.filter((q) => q.scheme === 'https').every((q) => q.headers.authorization === basic('carol:pa55')),
        'the registry over https got the credentials',
      );
      t.strictSame(
        gets.filter((q) => q.scheme === 'http').map((q) => q.headers.authorization),
        gets.filter((q) => q.scheme === 'http').map(() => undefined),
        'the plain-HTTP hop never did',
      );
    });
  }
});
