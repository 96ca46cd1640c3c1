/** -p/-P parsing (ports/publish.ts): Docker's forms, and what a hostile spec or image config gets. */
import t from 'tap';
import { combineMappings, MAX_RANGE, parsePublish, publishAll } from '../src/ports/publish.js';

const m = (hostIP: string, hostPort: number, containerPort: number, protocol: 'tcp' | 'udp' = 'tcp') => ({ hostIP, hostPort, containerPort, protocol });

const good: [string, ReturnType<typeof m>[]][] = [
  ['80', [m('0.0.0.0', 0, 80)]],
  ['8080:80', [m('0.0.0.0', 8080, 80)]],
  ['127.0.0.1:8080:80', [m('127.0.0.1', 8080, 80)]],
  ['127.0.0.1::80', [m('127.0.0.1', 0, 80)]],
  ['[::1]:8080:80', [m('::1', 8080, 80)]],
  ['[::1]::80/udp', [m('::1', 0, 80, 'udp')]],
  ['8000-8001:80-81', [m('0.0.0.0', 8000, 80), m('0.0.0.0', 8001, 81)]],
  ['80-81', [m('0.0.0.0', 0, 80), m('0.0.0.0', 0, 81)]],
  ['127.0.0.1:5353:53/udp', [m('127.0.0.1', 5353, 53, 'udp')]],
  ['53/UDP', [m('0.0.0.0', 0, 53, 'udp')]],
  ['8080:80/tcp', [m('0.0.0.0', 8080, 80)]],
  ['65535:1', [m('0.0.0.0', 65535, 1)]],
  ['127.0.0.1:8000-8010:80', [{ ...m('127.0.0.1', 8000, 80), hostPortEnd: 8010 }]],
  ['8000-8000:80', [m('0.0.0.0', 8000, 80)]],
  [':80', [m('0.0.0.0', 0, 80)]],
  ['[127.0.0.1]:8080:80', [m('127.0.0.1', 8080, 80)]],
];
for (const [spec, expected] of good) t.strictSame(parsePublish(spec), expected, `-p ${spec}`);

const bad: [string, RegExp][] = [
  ['0', /out of range/],
  ['8080:0', /out of range/],
  ['0:80', /out of range/],
  ['65536', /out of range/],
  ['80:65536', /out of range/],
  ['abc', /bad container port/],
  ['', /bad container port/],
  ['80:', /bad container port/],
  ['-1', /bad container port/],
  ['8080:80/sctp', /unsupported protocol/],
  ['8080:80/', /unsupported protocol/],
  ['1.2.3:8080:80', /bad host address/],
  ['localhost:8080:80', /bad host address/],
  ['::1:8080:80', /too many fields/],
  ['[::1]:80', /expected \[IP\]/],
  ['[fe80::1%eth0]:8080:80', /bad host address/],
  ['1-70000:1-70000', /out of range/],
  [`1-${MAX_RANGE + 1}`, /more than/],
  [`1000-${1000 + MAX_RANGE}:1000-${1000 + MAX_RANGE}`, /more than/],
  ['81-80', /ends before it starts/],
  ['8000:80-81', /differ in length/],
  ['80 ', /bad container port/],
  ['1e3', /bad container port/],
  ['0x50', /bad container port/],
  ['a'.repeat(300), /too long/],
  ['127.0.0.1:8080:80:90', /too many fields/],
];
for (const [spec, message] of bad) t.throws(() => parsePublish(spec), { code: 'ERR_USAGE', message }, `-p ${JSON.stringify(spec.slice(0, 40))} refused`);

t.test('-P: the image ExposedPorts on free ports', async (t) => {
  // (JavaScript orders a key that reads as an integer first.)
  t.strictSame(publishAll({ '80/tcp': {}, '53/udp': {}, '8080': {} }), [m('0.0.0.0', 0, 8080), m('0.0.0.0', 0, 80), m('0.0.0.0', 0, 53, 'udp')]);
  t.strictSame(publishAll({ '80/tcp': {} }, '127.0.0.1'), [m('127.0.0.1', 0, 80)]);
  t.strictSame(publishAll({ '7000-7001/tcp': {} }), [m('0.0.0.0', 0, 7000), m('0.0.0.0', 0, 7001)]);
  t.strictSame(publishAll({ '9/sctp': {} }), [], 'sctp: nothing to forward it with');
  t.strictSame(publishAll(undefined), []);
  t.strictSame(publishAll(null), []);
  // Hostile image configs: a bad record, never a crash or a port 0.
  for (const exposed of [{ '0/tcp': {} }, { '80/icmp': {} }, { 'x/tcp': {} }, { '70000': {} }, { '1-65535/tcp': {} }, ['80/tcp'], 'x', 5]) {
    t.throws(() => publishAll(exposed), { code: 'ERR_INPUT_RECORD' }, `ExposedPorts ${JSON.stringify(exposed)}`);
  }
  const many = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`${1000 + i * 1000}-${1000 + i * 1000 + 999}/tcp`, {}]));
  t.throws(() => publishAll(many), { code: 'ERR_INPUT_RECORD', message: /more than/ }, 'too many ports in all');
});

t.test('-p wins over -P for the same container port; duplicates refused', async (t) => {
  const combined = combineMappings(parsePublish('127.0.0.1:8080:80'), publishAll({ '80/tcp': {}, '80/udp': {}, '443/tcp': {} }));
  t.strictSame(combined, [m('127.0.0.1', 8080, 80), m('0.0.0.0', 0, 80, 'udp'), m('0.0.0.0', 0, 443)]);
  t.throws(() => combineMappings([...parsePublish('8080:80'), ...parsePublish('8080:81')]), { code: 'ERR_USAGE', message: /published twice/ });
  t.doesNotThrow(() => combineMappings([...parsePublish('8080:80'), ...parsePublish('8080:80/udp')]), 'tcp and udp of one port are two sockets');
  t.doesNotThrow(() => combineMappings([...parsePublish('80'), ...parsePublish('81')]), 'free ports are not duplicates');
});
