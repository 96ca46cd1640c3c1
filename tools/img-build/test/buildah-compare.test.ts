/**
 * img-build against buildah bud (Debian's buildah 1.28, an independent
 * builder): the same Dockerfiles and contexts built by both, both images
 * unpacked with `umoci raw unpack` (an independent unpacker), and the trees
 * (type, mode with setuid/setgid/sticky, owner, size, content digest, symlink
 * target, hard links, xattrs) and the config fields (Env, Cmd, Entrypoint,
 * WorkingDir, User, Labels, ExposedPorts, Volumes, StopSignal) compared.
 * Then our image runs with runc from umoci's bundle, and img-push to the
 * registry + img-fetch into a fresh store give back the same digest.
 *
 * Few builds, each exercising many rules (the file must stay near two minutes):
 *   files: RUN adds, deletes (whiteouts), replaces a dir (opaque), chmod/chown/
 *     setuid/setgid/sticky, symlinks, hard links (one to a lower layer's file);
 *     COPY of globs and dirs, --chown by name and id, --chmod; .dockerignore
 *     with ** and ! exceptions; ADD of a local tar.gz; ENV/ARG/--build-arg/
 *     WORKDIR/USER/ENTRYPOINT/CMD/LABEL/EXPOSE/VOLUME/STOPSIGNAL.
 *   debian: the shared debian image as base (skipped without it): a whole
 *     tree's children whited out, an opaque /etc/apt, owners by name from
 *     Debian's passwd, setuid on a lower file, a hard link to it then its removal.
 *   stages: a multi-stage build with --target (a later failing stage is
 *     never built), COPY --from a stage (with --chown) and from an image.
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildahMissing, comparableConfig, compareTrees, layoutConfig, startBuildah, treeOf, unpackImage } from '../../../test/helpers/buildah.js';
import { busyboxLayout, hasSharedImages, importToStore, SHARED_IMAGES } from '../../../test/helpers/fixtures.js';
import { pushImage, startRegistry } from '../../../test/helpers/registry.js';
import { removeStore, tempStore } from '../../../test/helpers/rootfs.js';
import { runTool } from '../../../test/helpers/tools.js';

const execFileAsync = promisify(execFile);

/** Labels buildah adds (its version), not part of the Dockerfile. */
const BUILDER_LABELS = ['io.buildah.version'];

interface Case {
  name: string;
  files: Record<string, string | { content: string; mode?: number } | { symlink: string } | { dir: true }>;
  dockerfile: string;
  buildArgs?: Record<string, string>;
  target?: string;
  /** Why the case cannot run here. */
  skip?: string | false;
  /** Paths that legitimately differ besides the runtime placeholders (say why). */
  ignore?: string[];
}

async function main(): Promise<void> {
  const work = mkdtempSync('/tmp/conveyor-buildah-compare-');
  const reg = await startRegistry();
  const buildah = await startBuildah();
  const root = tempStore('conveyor-buildah-compare-');
  t.teardown(async () => {
    await buildah.cleanup();
    await reg.stop();
    removeStore(root);
    rmSync(work, { recursive: true, force: true });
  });
  // The same base both ways: buildah pulls it from the registry, img-build finds it in the store under that name.
  const base = `${reg.host}/base/busybox:latest`;
  await pushImage(`${busyboxLayout()}:latest`, reg, 'base/busybox:latest');
  importToStore(`${busyboxLayout()}:latest`, root, base);
  const debian = `${reg.host}/base/debian:bookworm-slim`;
  if (hasSharedImages) {
    await pushImage(`${join(SHARED_IMAGES, 'debian')}:bookworm-slim`, reg, 'base/debian:bookworm-slim');
    importToStore(`${join(SHARED_IMAGES, 'debian')}:bookworm-slim`, root, debian);
  }
  // A tar.gz for ADD: made with GNU tar (an independent writer), owners and modes kept.
  const tarSource = join(work, 'tar-source');
  mkdirSync(join(tarSource, 'pkg', 'bin'), { recursive: true });
  writeFileSync(join(tarSource, 'pkg', 'bin', 'tool'), '#!/bin/sh\necho tool\n');
  chmodSync(join(tarSource, 'pkg', 'bin', 'tool'), 0o755);
  writeFileSync(join(tarSource, 'pkg', 'README'), 'from a tarball\n');
  symlinkSync('bin/tool', join(tarSource, 'pkg', 'tool-link'));
  await execFileAsync('tar', ['-czf', join(work, 'archive.tar.gz'), '--owner=1000', '--group=50', '--numeric-owner', '-C', tarSource, 'pkg']);
  const archive = readFileSync(join(work, 'archive.tar.gz')).toString('latin1');

  const cases: Case[] = [
    {
      name: 'files',
      buildArgs: { WHO: 'world' },
      files: {
        '.dockerignore': '# comments and blank lines are skipped\n\n**/*.log\n!keep.log\nsecret/\n/notes/draft*\n',
        'a.txt': 'a\n',
        'b.txt': 'b\n',
        'c.md': 'not a txt\n',
        'run.sh': { content: '#!/bin/sh\necho run\n', mode: 0o755 },
        'build.log': 'ignored\n',
        'keep.log': 'kept by the ! exception\n',
        'deep/nested/x.log': 'ignored by **\n',
        'deep/nested/y.conf': 'y\n',
        'deep/link': { symlink: 'nested/y.conf' },
        'deep/empty': { dir: true },
        'secret/key': 'never copied\n',
        'notes/draft1': 'ignored\n',
        'notes/final': 'final\n',
        'owned.txt': 'owned\n',
        'archive.tar.gz': archive,
      },
      dockerfile: [
        '# escape=\\',
        '# a comment after the parser directive',
        `FROM ${base}`,
        'ARG WHO=nobody',
        'ARG UNUSED',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile's ${WHO}, expanded by the builders
        'ENV GREETING="hello ${WHO}" \\',
        '    OPT=/opt/app',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: Docker's ${VAR:-default} and ${VAR:+alt}
        'ENV DEF=${UNSET:-fallback} ALT=${WHO:+was-set} NONE=${UNSET:+never} ESC=\\$WHO',
        'ENV LEGACY value with spaces',
        'ARG PORT=9000',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: as above
        'LABEL org.example.name="demo app" org.example.who=${WHO}',
        // The fixture's busybox links few applets: the others are called through busybox itself.
        'RUN mkdir -p /data/keep /data/gone /data/replace /data/sgid && \\',
        '    echo a > /data/keep/a && echo b > /data/gone/b && echo old > /data/replace/old && \\',
        '    echo del > /data/delete-me && busybox ln -s /data/keep/a /data/abs-link && busybox ln -s keep/a /data/rel-link && \\',
        '    busybox ln -s /nowhere /data/dangling && echo hl > /data/hl1 && busybox ln /data/hl1 /data/hl2 && \\',
        '    echo s > /data/suid && busybox chmod 4755 /data/suid && busybox chmod 2750 /data/sgid && busybox chmod 1777 /data/keep && \\',
        '    busybox chown 1000:50 /data/keep/a && busybox mkfifo /data/fifo',
        'RUN rm /data/delete-me && rm -r /data/gone && rm -r /data/replace && mkdir /data/replace && \\',
        '    echo new > /data/replace/new && busybox ln /data/keep/a /data/hl3 && echo "$GREETING" > /data/greeting && \\',
        '    busybox chmod 0600 /etc/group && rm /bin/wc',
        'COPY *.txt /glob/',
        'COPY deep /deep-copy/',
        'COPY notes/ keep.log run.sh /misc/',
        'COPY --chown=app:staff owned.txt /owned/by-name',
        'COPY --chown=1000:1000 owned.txt /owned/by-id',
        'COPY --chmod=0640 a.txt /owned/moded',
        'ADD archive.tar.gz /unpacked/',
        // Docker creates a WORKDIR at once, buildah on the next step run in it: a step in each keeps them alike.
        'WORKDIR /app/sub',
        'RUN pwd > here',
        'WORKDIR ../other',
        'RUN pwd > where',
        'USER app',
        'RUN id -u > /tmp/uid && echo "$OPT" > /tmp/opt',
        'EXPOSE 80 53/udp 8080/tcp $PORT',
        'VOLUME ["/vol"]',
        'STOPSIGNAL SIGQUIT',
        'ENTRYPOINT ["/bin/sh", "-c"]',
        'CMD ["echo $GREETING"]',
        '',
      ].join('\n'),
    },
    {
      // A realistic base: thousands of files, whiteouts of a whole tree's children, an opaque /etc/apt,
      // owners by name from Debian's /etc/passwd, setuid on a lower file. No useradd: it writes the day into /etc/shadow.
      name: 'debian',
      skip: !hasSharedImages && `${SHARED_IMAGES} is absent`,
      files: { 'site/index.html': '<h1>hi</h1>\n', 'site/css/main.css': 'h1 {}\n', 'site/.hidden': 'dot file\n' },
      dockerfile: [
        `FROM ${debian}`,
        'RUN rm -rf /usr/share/doc/* /usr/share/man && rm -rf /etc/apt && mkdir -p /etc/apt/sources.list.d && \\',
        '    echo "deb http://deb.example/ stable main" > /etc/apt/sources.list && \\',
        '    echo "web:x:1500:1500:web:/srv/www:/usr/sbin/nologin" >> /etc/passwd && echo "web:x:1500:" >> /etc/group && \\',
        '    mkdir -p /srv/www && chown web:web /srv/www && chmod u+s /usr/bin/env',
        'COPY --chown=web:web site/ /srv/www/',
        'COPY --chown=daemon site/index.html /srv/daemon-owned.html',
        'RUN ln -sf /srv/www/index.html /srv/index && ln /usr/bin/env /srv/env-link && rm /usr/bin/env',
        'USER web:web',
        'WORKDIR /srv/www',
        'RUN ls -A > listing && id > whoami',
        'CMD ["ls"]',
        '',
      ].join('\n'),
    },
    {
      name: 'stages',
      target: 'final',
      files: { 'src.txt': 'source\n' },
      dockerfile: [
        `FROM ${base} AS builder`,
        'COPY src.txt /src/',
        'RUN mkdir /out && cat /src/src.txt > /out/artifact && echo extra > /out/extra && chmod 0700 /out',
        '',
        `FROM ${base} AS final`,
        'COPY --from=builder /out/artifact /artifact',
        'COPY --from=builder --chown=app /out /out-copy',
        `COPY --from=${base} /etc/passwd /passwd-from-image`,
        'CMD ["cat", "/artifact"]',
        '',
        'FROM final AS after',
        'RUN exit 1',
        '',
      ].join('\n'),
    },
  ];

  for (const c of cases) {
    await t.test(c.name, { skip: c.skip ?? false }, async (t) => {
      const context = join(work, `ctx-${c.name}`);
      for (const [path, spec] of Object.entries(c.files)) {
        const full = join(context, path);
        mkdirSync(join(full, '..'), { recursive: true });
        if (typeof spec === 'string') writeFileSync(full, spec, 'latin1');
        else if ('symlink' in spec) symlinkSync(spec.symlink, full);
        else if ('dir' in spec) mkdirSync(full, { recursive: true });
        else {
          writeFileSync(full, spec.content);
          if (spec.mode !== undefined) chmodSync(full, spec.mode);
        }
      }
      writeFileSync(join(context, 'Dockerfile'), c.dockerfile);
      const ours = `${reg.host}/ours/${c.name}:latest`;
      const args = ['--root', root, '-t', ours];
      for (const [key, value] of Object.entries(c.buildArgs ?? {})) args.push('--build-arg', `${key}=${value}`);
      if (c.target) args.push('--target', c.target);

      // Both builders at once: they share nothing but the registry (buildah pulls; we do not).
      const [built, theirs] = await Promise.all([
        runTool('img-build', [...args, context]),
        buildah.bud(context, { tags: [c.name], buildArgs: c.buildArgs, target: c.target }),
      ]);
      t.equal(theirs.code, 0, theirs.code === 0 ? 'buildah bud built it' : `buildah bud: ${theirs.stderr}`);
      t.equal(built.code, 0, built.code === 0 ? 'img-build built it' : `img-build: ${built.stderr}`);
      if (built.code !== 0 || theirs.code !== 0) return;
      const image = built.records.find((r) => r.type === 'image');
      t.match(image, { type: 'image', ref: ours }, 'one image record, named by -t');

      const theirLayout = join(work, `buildah-${c.name}`);
      await buildah.exportImage(c.name, theirLayout, c.name);
      const ourRootfs = join(work, `ours-${c.name}`);
      const theirRootfs = join(work, `theirs-${c.name}`);
      await Promise.all([unpackImage(`${root}:${ours}`, ourRootfs), unpackImage(`${theirLayout}:${c.name}`, theirRootfs)]);
      const differences = compareTrees(treeOf(ourRootfs), treeOf(theirRootfs), c.ignore ? { ignore: c.ignore } : {});
      t.strictSame(differences, [], 'the same files as buildah');

      const ourConfig = comparableConfig(layoutConfig(root, ours));
      const theirConfig = comparableConfig(layoutConfig(theirLayout, c.name));
      // buildah stamps its own version label; a base image built by buildah passes the same label to ours.
      const ourLabels = ourConfig.Labels as Record<string, string>;
      const theirLabels = theirConfig.Labels as Record<string, string>;
      for (const label of BUILDER_LABELS) if (!(label in ourLabels)) delete theirLabels[label];
      t.strictSame(ourConfig, theirConfig, 'the same config as buildah');
      t.strictSame(image.config?.Env, ourConfig.Env, "the image record carries the config's Env");
    });
  }

  await t.test('our image runs with runc from an umoci bundle', async (t) => {
    const ref = `${reg.host}/ours/stages:latest`;
    const bundle = join(work, 'bundle');
    const unpacked = await execFileAsync('umoci', ['unpack', '--image', `${root}:${ref}`, bundle]).then(
      () => true,
      (error) => t.fail(`umoci unpack: ${error.stderr ?? error}`),
    );
    if (!unpacked) return;
    const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
    t.strictSame(config.process.args, ['cat', '/artifact'], "umoci's bundle runs the image's CMD");
    config.process.terminal = false;
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
    const runcRoot = join(work, 'runc');
    const id = `conveyor-buildah-compare-${process.pid}`;
    const ran = await execFileAsync('runc', ['--root', runcRoot, 'run', '--bundle', bundle, id]).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
    await execFileAsync('runc', ['--root', runcRoot, 'delete', '--force', id]).catch(() => undefined);
    t.equal(ran.code, 0, ran.stderr);
    t.equal(ran.stdout, 'source\n', 'busybox cat of the file COPY --from put there');
  });

  await t.test('img-push, then img-fetch into a fresh store: the same digest', async (t) => {
    const ref = `${reg.host}/ours/files:latest`;
    const listed = await runTool('img-ls', ['--root', root, '--json', ref]);
    const digest = listed.records.find((r) => r.type === 'image')?.digest;
    t.ok(digest, `img-ls finds ${ref}: ${listed.stderr}`);
    if (!digest) return;
    const pushed = await runTool('img-push', ['--root', root, ref]);
    t.equal(pushed.code, 0, pushed.stderr);
    t.equal(pushed.records.find((r) => r.type === 'image')?.digest, digest, 'pushed as built');
    const fresh = tempStore('conveyor-buildah-compare-fetch-');
    t.teardown(() => removeStore(fresh));
    const fetched = await runTool('img-fetch', ['--root', fresh, ref]);
    t.equal(fetched.code, 0, fetched.stderr);
    t.equal(fetched.records.find((r) => r.type === 'image')?.digest, digest, 'fetched back with the same digest');
  });
}

const missing = buildahMissing();
if (missing) {
  t.comment(`skipped: ${missing}`);
  t.pass(`skipped: ${missing}`);
} else {
  await main();
}
