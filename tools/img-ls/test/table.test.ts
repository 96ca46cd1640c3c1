/** img-ls's table rows, from records, without running the tool. */
import t from 'tap';
import type { ListedImage } from '../src/list.js';
import { imageRow, imageTable, IMAGE_TABLE_HEADERS, repositoryAndTag } from '../src/table.js';

const now = Date.parse('2026-11-29T12:00:00Z');
const config = `sha256:${'ab12cd34ef56'.repeat(5)}abcd`;

function image(ref: string, size: number, created?: string): ListedImage {
  return {
    type: 'image',
    v: 1,
    ref,
    digest: `sha256:${'0'.repeat(64)}`,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    platform: { os: 'linux', architecture: 'amd64' },
    configDescriptor: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: config, size: 100 },
    config: {},
    created,
    layers: [],
    size: size + 5000,
    unpackedSize: size,
    repoDigest: `sha256:${'1'.repeat(64)}`,
    store: '/var/lib/conveyor',
  };
}

// [ref, size, created, expected row]
const rows: [string, number, string | undefined, string[]][] = [
  ['docker.io/library/busybox:latest', 2_154_000, '2026-11-26T12:00:00Z', ['busybox', 'latest', 'ab12cd34ef56', '3 days ago', '2.15MB']],
  ['localhost:5000/app:v1', 999, '2026-11-29T11:00:00Z', ['localhost:5000/app', 'v1', 'ab12cd34ef56', '1 hour ago', '999B']],
  ['ghcr.io/org/tool@sha256:' + 'f'.repeat(64), 31_400_000, undefined, ['ghcr.io/org/tool', '<none>', 'ab12cd34ef56', 'N/A', '31.4MB']],
  ['not a reference', 0, 'garbage', ['not a reference', '<none>', 'ab12cd34ef56', 'N/A', '0B']],
];
for (const [ref, size, created, expected] of rows) {
  t.strictSame(imageRow(image(ref, size, created), now), expected, `row of ${ref}`);
}

t.test("the table has Docker's headers and one line per image, columns aligned", async (t) => {
  const text = imageTable([image('docker.io/library/busybox:latest', 2_154_000), image('localhost:5000/app:v1', 999)], { now });
  const lines = text.split('\n');
  t.equal(lines.length, 4, 'headers, two rows, final newline');
  t.equal(lines[3], '');
  t.strictSame(lines[0].split(/ {2,}/), IMAGE_TABLE_HEADERS);
  t.equal(lines[1].indexOf('latest'), lines[0].indexOf('TAG'), 'TAG column aligned');
  t.equal(lines[2].indexOf('v1'), lines[0].indexOf('TAG'));
  t.equal(imageTable([], { now }), 'REPOSITORY   TAG   IMAGE ID   CREATED   SIZE\n', 'no images: headers only');
});

t.test('--digests adds the DIGEST column after TAG: the repository digest', async (t) => {
  const lines = imageTable([image('docker.io/library/busybox:latest', 10)], { now, digests: true }).split('\n');
  t.strictSame(lines[0].split(/ {2,}/), ['REPOSITORY', 'TAG', 'DIGEST', 'IMAGE ID', 'CREATED', 'SIZE']);
  t.strictSame(lines[1].split(/ {2,}/), ['busybox', 'latest', `sha256:${'1'.repeat(64)}`, 'ab12cd34ef56', 'N/A', '10B']);
});

// [stored name, repository, tag]
const names: [string, string, string][] = [
  ['mybox:short', 'mybox', 'short'],
  ['short', 'short', 'latest'],
  [`sha256:${'a'.repeat(64)}`, '<none>', '<none>'],
  ['quay.io/org/x@sha256:' + 'b'.repeat(64), 'quay.io/org/x', '<none>'],
];
for (const [stored, repository, tag] of names) {
  t.strictSame(repositoryAndTag(stored), [repository, tag], `${stored} shows as ${repository} ${tag}`);
}
