import t from 'tap';
import { normalizeReference, parseReference, familiarName, isLoopbackRegistry } from '../src/reference.js';

// [input, normalised] — the table follows distribution/reference's ParseNormalizedNamed.
const normal: [string, string][] = [
  ['alpine', 'docker.io/library/alpine:latest'],
  ['alpine:3.20', 'docker.io/library/alpine:3.20'],
  ['library/alpine', 'docker.io/library/alpine:latest'],
  ['docker.io/alpine', 'docker.io/library/alpine:latest'],
  ['index.docker.io/library/alpine:edge', 'docker.io/library/alpine:edge'],
  ['user/app', 'docker.io/user/app:latest'],
  ['user/app/sub:v1', 'docker.io/user/app/sub:v1'],
  ['localhost/app', 'localhost/app:latest'],
  ['localhost:5000/app', 'localhost:5000/app:latest'],
  ['127.0.0.1:5000/team/app:v2', '127.0.0.1:5000/team/app:v2'],
  ['quay.io/coreos/etcd', 'quay.io/coreos/etcd:latest'],
  ['ghcr.io/a/b:1.0-rc.1', 'ghcr.io/a/b:1.0-rc.1'],
  ['[::1]:5000/app', '[::1]:5000/app:latest'],
  ['alpine@sha256:' + 'a'.repeat(64), 'docker.io/library/alpine@sha256:' + 'a'.repeat(64)],
  ['alpine:3@sha256:' + 'b'.repeat(64), 'docker.io/library/alpine:3@sha256:' + 'b'.repeat(64)],
  ['my_repo/a__b/c--d', 'docker.io/my_repo/a__b/c--d:latest'],
  ['registry.example.com:443/x', 'registry.example.com:443/x:latest'],
];
for (const [input, expected] of normal) {
  t.equal(normalizeReference(input), expected, input);
}

const invalid = [
  '',
  'Alpine',
  'alpine:',
  'alpine:-bad',
  'alpine@sha256:abc',
  'alpine@sha256:' + 'A'.repeat(64),
  '/alpine',
  'alpine/',
  'a//b',
  'UPPER/app',
  'a:b:c',
  'x'.repeat(256),
  'alpine:' + 't'.repeat(129),
  '-leading',
];
for (const input of invalid) {
  t.throws(() => parseReference(input), { code: 'ERR_REF_INVALID' }, JSON.stringify(input));
}

t.equal(familiarName(parseReference('alpine')), 'alpine:latest');
t.equal(familiarName(parseReference('localhost:5000/app:v1')), 'localhost:5000/app:v1');
t.same(parseReference('alpine@sha256:' + 'a'.repeat(64)).tag, undefined, 'a digest implies no latest tag');

for (const [host, loop] of [
  ['localhost:5000', true],
  ['127.0.0.1:41000', true],
  ['127.5.6.7', true],
  ['[::1]:5000', true],
  ['docker.io', false],
  ['localhost.example.com', false],
  ['128.0.0.1:5000', false],
] as const) {
  t.equal(isLoopbackRegistry(host), loop, host);
}
