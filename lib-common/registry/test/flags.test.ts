/**
 * The registry flags every registry tool shares (flags.ts), table-driven:
 * host lists, transfer limits, and the client options built from parsed
 * flags and the environment (flags win over variables; credentials looked up
 * only when asked, from DOCKER_CONFIG).
 */
import t from 'tap';
import { parseArgs } from '@conveyor/lib-common/args';
import { parseHostList, REGISTRY_FLAGS, registryClientOptions, transferLimits } from '../src/flags.js';

t.test('parseHostList', async (t) => {
  const cases: [string[], string[]][] = [
    [[], []],
    [['a:5000'], ['a:5000']],
    [
      ['a, b ,', 'https://c/'],
      ['a', 'b', 'c'],
    ],
    [['http://d:1//'], ['d:1']],
  ];
  for (const [input, expected] of cases) t.same(parseHostList(input), expected, JSON.stringify(input));
});

t.test('transferLimits', async (t) => {
  t.same(transferLimits(undefined, undefined), { minRate: undefined, rateWindowMs: undefined });
  t.same(transferLimits('2k/s', '1.5'), { minRate: 2048, rateWindowMs: 1500 });
  t.same(transferLimits('0', ''), { minRate: 0, rateWindowMs: undefined });
  for (const [rate, window] of [
    ['fast', undefined],
    [undefined, '0'],
    [undefined, 'soon'],
    [undefined, '4000'],
  ]) {
    t.throws(() => transferLimits(rate, window), { code: 'ERR_USAGE' }, `${rate} ${window}`);
  }
});

t.test('registryClientOptions', async (t) => {
  const args = parseArgs(['--insecure-registry', 'a:1', '--plain-http', '--ca-file', '/ca.pem', '--min-rate', '0'], REGISTRY_FLAGS);
  const dir = t.testdir({ 'config.json': JSON.stringify({ auths: { 'a:1': { auth: Buffer.from('u:p').toString('base64') } } }) });
  const options = registryClientOptions(
    args,
    { CONVEYOR_INSECURE_REGISTRIES: 'b:2,c:3', CONVEYOR_MIN_RATE: '5k', CONVEYOR_RATE_WINDOW: '2', DOCKER_CONFIG: dir },
    { userAgent: 'ua' },
  );
  t.match(options, {
    insecure: false,
    insecureRegistries: ['a:1', 'b:2', 'c:3'],
    plainHttp: true,
    caFile: '/ca.pem',
    minRate: 0,
    rateWindowMs: 2000,
    userAgent: 'ua',
  });
  t.match(await options.credentials!('a:1'), { username: 'u', password: 'p' });
  t.equal(await options.credentials!('elsewhere:1'), undefined);
  t.throws(() => registryClientOptions(parseArgs(['--rate-window', 'x'], REGISTRY_FLAGS), {}, { userAgent: 'ua' }), { code: 'ERR_USAGE' });
  // Blob bodies on the raw-socket path unless CONVEYOR_RAW_BLOBS=0.
  const raw: [Record<string, string>, boolean][] = [
    [{}, true],
    [{ CONVEYOR_RAW_BLOBS: '1' }, true],
    [{ CONVEYOR_RAW_BLOBS: '0' }, false],
  ];
  for (const [env, expected] of raw)
    t.equal(registryClientOptions(parseArgs([], REGISTRY_FLAGS), env, { userAgent: 'ua' }).rawBlobs, expected, JSON.stringify(env));
});
