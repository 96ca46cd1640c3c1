/**
 * The config rules of img-build's config.ts, table-driven, without a build:
 * EXPOSE keys, WORKDIR resolution, the `|N K=V` history prefix, ENV
 * replacement order, and Docker's ENTRYPOINT/CMD interplay.
 */
import t from 'tap';
import { applyMetadata, argPrefix, envMap, exposedPorts, imageState, nopText, resolveWorkdir, scratchState, DEFAULT_PATH_ENV } from '../dist/config.js';

t.test('EXPOSE keys', async (t) => {
  const cases: [string[], string[]][] = [
    [['80'], ['80/tcp']],
    [
      ['53/udp', '443/TCP'],
      ['53/udp', '443/tcp'],
    ],
    [['8000-8002'], ['8000/tcp', '8001/tcp', '8002/tcp']],
    [['9000-9001/udp'], ['9000/udp', '9001/udp']],
  ];
  for (const [ports, keys] of cases) t.strictSame(exposedPorts(ports), keys, ports.join(' '));
});

t.test('WORKDIR resolution', async (t) => {
  const cases: [string | undefined, string, string][] = [
    [undefined, 'app', '/app'],
    ['', '/srv', '/srv'],
    ['/srv', 'app/../lib', '/srv/lib'],
    ['/srv/app', '/opt//x/', '/opt/x'],
    ['/a', '../../..', '/'],
  ];
  for (const [current, path, expected] of cases) t.equal(resolveWorkdir(current, path), expected, `${current} + ${path}`);
});

t.test('history prefix of the build args in scope', async (t) => {
  t.equal(argPrefix([]), '');
  t.equal(
    argPrefix([
      ['B', '2'],
      ['A', 'x y'],
    ]),
    '|2 A=x y B=2 ',
  );
});

t.test('ENV replaces a variable in place; envMap reads the last value', async (t) => {
  const base = { Env: ['PATH=/bin', 'A=1', 'B=2'] };
  const step = {
    kind: 'ENV' as const,
    line: 2,
    original: 'ENV A=3 C=4',
    pairs: [
      ['A', '3'],
      ['C', '4'],
    ] as [string, string][],
  };
  t.strictSame(applyMetadata(base, step, false).Env, ['PATH=/bin', 'A=3', 'B=2', 'C=4']);
  t.strictSame(base.Env, ['PATH=/bin', 'A=1', 'B=2'], 'the input is not changed');
  t.equal(envMap(['X=1', 'X=2', 'Y']).get('X'), '2');
  t.equal(nopText(step), 'ENV A=3 C=4');
});

t.test("ENTRYPOINT clears the base's Cmd unless this stage set CMD; shell forms use SHELL", async (t) => {
  const base = { Cmd: ['sh'], Shell: ['/bin/ash', '-c'] };
  const entrypoint = { kind: 'ENTRYPOINT' as const, line: 2, original: 'ENTRYPOINT run', script: 'run' };
  t.strictSame(applyMetadata(base, entrypoint, false), { Cmd: null, Shell: ['/bin/ash', '-c'], Entrypoint: ['/bin/ash', '-c', 'run'] });
  t.strictSame(applyMetadata(base, entrypoint, true).Cmd, ['sh'], 'a CMD of this stage stays');
  const cmd = { kind: 'CMD' as const, line: 3, original: 'CMD ["a", "b"]', exec: ['a', 'b'] };
  t.strictSame(applyMetadata({}, cmd, false).Cmd, ['a', 'b']);
});

t.test('base states', async (t) => {
  const scratch = scratchState();
  t.strictSame(scratch.config.config, { Env: [DEFAULT_PATH_ENV] }, "scratch gets Docker's PATH");
  t.strictSame(scratch.layers, []);
  const image = imageState(
    {
      architecture: 'arm64',
      os: 'linux',
      config: { Env: ['A=1'] },
      rootfs: { type: 'layers', diff_ids: ['sha256:' + 'a'.repeat(64)] },
      history: [{ created_by: 'x' }],
    },
    [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: 'sha256:' + 'b'.repeat(64), size: 3, annotations: { k: 'v' } }],
  );
  t.strictSame(image.config.config?.Env, [DEFAULT_PATH_ENV, 'A=1'], 'an image without PATH gets the default first');
  t.equal(image.config.architecture, 'arm64', 'the platform comes from the base');
  t.strictSame(image.layers, [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: 'sha256:' + 'b'.repeat(64), size: 3 }]);
});
