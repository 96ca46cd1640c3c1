/**
 * A warm `img-fetch --pull=always` (the image is in the store, the tag's
 * HEAD says it is unchanged) against a plain-HTTP docker-registry with Basic
 * auth: the HEAD, its 401 challenge and the answer with the credentials go
 * over the registry client's raw path (raw-exchange.ts), so the run loads
 * neither node:http nor node:https, and prints what a --pull=missing run
 * prints. Through the fault proxy, a HEAD that stalls (once: retried; always:
 * given up), a HEAD answered 503 or 404 end the same way over the raw path
 * as over node:http (CONVEYOR_RAW_BLOBS=0). Dropped connections and a HEAD
 * answered with a body are in lib-common/registry/test/raw-head.test.ts.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FaultAction, ProxiedRequest } from '../../../test/helpers/registry.js';
import { startAuthProxy, withRule, type AuthProxy } from './auth-proxy.js';
import { runFetch } from './run.js';

let setup: AuthProxy;
let store: string;

t.before(async () => {
  setup = await startAuthProxy();
  store = t.testdir();
  const cold = await runFetch(['--root', store, `${setup.reg.host}/bb:latest`], { env: { DOCKER_CONFIG: setup.dockerConfig } });
  if (cold.code !== 0) throw new Error(`the first pull failed: ${cold.stderr}`);
});
t.teardown(() => setup?.stop());

const heads = (logs: string) => logs.split('\n').filter((l) => /"HEAD \/v2\/bb\/manifests\/latest/.test(l)).length;
const errorCode = (logs: Record<string, any>[]) => logs.find((l) => l.level === 'error')?.code;

t.test('a warm --pull=always asks the registry with a HEAD and loads neither node:http nor node:https', async (t) => {
  const dir = t.testdir();
  const preload = join(dir, 'builtins.cjs');
  const out = join(dir, 'builtins');
  writeFileSync(
    preload,
    "process.on('exit', () => require('node:fs').writeFileSync(process.env.BUILTINS_OUT, process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)).join('\\n')));\n",
  );
  const ref = `${setup.reg.host}/bb:latest`;
  const missing = await runFetch(['--root', store, '--pull=missing', ref], { env: { DOCKER_CONFIG: setup.dockerConfig } });
  t.equal(missing.code, 0, missing.stderr);
  const before = heads(setup.reg.logs());
  // Our preload only: the test runner's NODE_OPTIONS would load its own hooks into the tool.
  const warm = await runFetch(['--root', store, '--pull=always', ref], {
    env: { DOCKER_CONFIG: setup.dockerConfig, NODE_OPTIONS: `--require ${preload}`, BUILTINS_OUT: out },
  });
  t.equal(warm.code, 0, warm.stderr);
  t.strictSame(warm.records, missing.records, 'the records of a --pull=missing run');
  t.ok(heads(setup.reg.logs()) > before, 'the registry was asked (HEAD)');
  const builtins = readFileSync(out, 'utf8').split('\n');
  t.ok(builtins.includes('net'), 'the HEAD went out on a socket of our own (node:net)');
  for (const name of ['http', 'https', '_http_client', 'tls']) t.notOk(builtins.includes(name), `node:${name} not loaded`);
});

t.test('a HEAD through the fault proxy ends the same over the raw path as over node:http', async (t) => {
  const isHead = (req: ProxiedRequest) => req.method === 'HEAD';
  // The proxy's `cut` of a bodiless answer never sends its head: a stall, ended by the minimum rate.
  const stall: FaultAction = { kind: 'cut' };
  const cases: [string, (req: ProxiedRequest, n: number) => FaultAction, number, string | undefined][] = [
    ['a HEAD that stalls once is retried', (req, n) => (isHead(req) && n === 0 ? stall : { kind: 'pass' }), 0, undefined],
    ['a HEAD that always stalls', (req) => (isHead(req) ? stall : { kind: 'pass' }), 1, 'ERR_REGISTRY_UNAVAILABLE'],
    [
      'a HEAD answered 503',
      (req) => (isHead(req) ? { kind: 'status', status: 503, headers: { 'retry-after': '0' } } : { kind: 'pass' }),
      1,
      'ERR_REGISTRY_UNAVAILABLE',
    ],
    ['a HEAD answered 404', (req) => (isHead(req) ? { kind: 'status', status: 404 } : { kind: 'pass' }), 1, 'ERR_REGISTRY_NOT_FOUND'],
  ];
  for (const [name, rule, code, error] of cases) {
    const outcomes: unknown[] = [];
    for (const raw of ['1', '0']) {
      withRule(setup.proxy, t, rule);
      const r = await runFetch(
        ['--root', store, '--pull=always', '--log-format=json', '--min-rate', '1k', '--rate-window', '0.2', `${setup.proxy.host}/bb:latest`],
        {
          env: { DOCKER_CONFIG: setup.dockerConfig, CONVEYOR_RAW_BLOBS: raw },
        },
      );
      t.equal(r.code, code, `${name} (CONVEYOR_RAW_BLOBS=${raw}): exit ${code}; ${r.stderr.slice(0, 400)}`);
      t.equal(errorCode(r.logs), error, `${name} (CONVEYOR_RAW_BLOBS=${raw}): ${error ?? 'no error'}`);
      outcomes.push([r.code, errorCode(r.logs), r.records.map((x) => [x.type, x.digest])]);
    }
    t.strictSame(outcomes[0], outcomes[1], `${name}: the same outcome both ways`);
  }
});
