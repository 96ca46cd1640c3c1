// node:fs and node:path are loaded with Node itself: imported here they cost nothing, where an `await import()`
// of them made a copy of each of their exports (node:fs: some 100) in the bundle.
import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { flag, intFlag, parseBytes } from '@conveyor/lib-common/args';
import { runCli } from '@conveyor/lib-common/cli';
import { ConveyorError, EXIT } from '@conveyor/lib-common/errors';
import type { SpawnOptions } from './options.js';
import { SPAWN_FLAGS } from './flags.js';
import { createTrace, NO_TRACE } from './trace.js';

const HELP = `Usage: ctr-spawn [OPTIONS] [-- COMMAND [ARG...]] < record

Run a container from the first \`rootfs\` record (layer-unpack) or \`mount\`
record (overlay-mount) on stdin, with an OCI runtime (runc by default). A
rootfs record gets an overlay of its own, removed when the container exits; a
mount record's overlay is used as it is and left mounted. The container's
stdout and stderr are ctr-spawn's; its stdin is /dev/null unless -i. Exits
with the container's exit code (128+N when killed by signal N), or 125 when
the container could not be started, 126 when the command is not executable,
127 when it is not found. Signals sent to ctr-spawn go to the container.

Command and environment:
      --entrypoint CMD     replace the image Entrypoint ('' clears it)
  -- COMMAND [ARG...]      replace the image Cmd
  -e, --env KEY[=VAL]      set a variable (KEY alone: take it from here); repeatable
      --env-file FILE      read KEY=VAL lines; repeatable; -e wins
  -w, --workdir DIR        working directory (default: image WorkingDir or /)
  -u, --user USER[:GROUP]  name or uid, resolved in the image's /etc/passwd
      --hostname NAME      default: the first 12 hex of the container id
      --init               run a reaping init (tini) as pid 1
Isolation and limits:
      --net, --network MODE
                           slirp (default when installed: pasta, else
                           slirp4netns; eth0 with outbound access, the host's
                           loopback unreachable), pasta, slirp4netns, private
                           (none is the same: only lo; the default without a
                           helper), host, or container:NAME|ID (join a running
                           container's network: a pod over 127.0.0.1)
      --pid MODE           host, or container:NAME|ID (join a running container's)
      --ipc MODE           private (default; shareable is the same), none (no
                           /dev/shm), host (and its /dev/shm), container:NAME|ID
      --uts host           the host's hostname (UTS namespace)
  -p, --publish [IP:][HOSTPORT:]CTRPORT[/tcp|/udp]
                           publish a container port on the host (default all
                           addresses; no HOSTPORT: a free one): 8080:80,
                           127.0.0.1:8080:80, 127.0.0.1::80, [::1]:8080:80,
                           8000-8001:80-81, 8000-8010:80 (the first free),
                           53:53/udp; repeatable. A userspace
                           relay connects to 127.0.0.1:CTRPORT inside; a taken
                           port fails the run (125). Not with --net host
  -P, --publish-all        publish every port of the image's ExposedPorts on a
                           free host port (the container record lists them)
      --add-host NAME:IP   a line for /etc/hosts; repeatable. IP host-gateway:
                           the address that reaches the host's 127.0.0.1
      --dns IP             a nameserver for /etc/resolv.conf instead of the host's
                           (whose loopback resolvers are left out); repeatable
      --dns-search DOMAIN  a search domain (. for none); repeatable
      --dns-option OPT     a resolver option (ndots:2); repeatable
      --read-only          mount the root filesystem (and /etc/hosts, /etc/hostname,
                           /etc/resolv.conf) read-only
      --privileged         all capabilities, every host device (/dev/fuse, loop,
                           kvm, net/tun...), no seccomp, no masked /proc paths,
                           /sys writable
      --device HOST[:CTR][:PERMS]
                           give a host device node (PERMS of rwm, default rwm);
                           repeatable: --device /dev/fuse
      --group-add GROUP    a supplementary group (gid, or name in the image's
                           /etc/group); repeatable. The primary group is always one
      --cap-add CAP        add a capability (or ALL); repeatable
      --cap-drop CAP       drop a capability (or ALL); repeatable
      --security-opt seccomp=PROFILE.json
                           this seccomp profile (Docker's JSON format) instead of
                           Docker's default allowlist
      --security-opt seccomp=unconfined
                           no seccomp filter
      --security-opt no-new-privileges[=true]
                           set no_new_privs (off by default, as Docker: setuid
                           helpers, su and sudo work); label=disable and
                           apparmor=unconfined are accepted (none is applied)
      --sysctl KEY=VALUE   a namespaced sysctl (net.*, fs.mqueue.*, kernel.shm*,
                           kernel.msg*, kernel.sem, kernel.domainname); repeatable.
                           Default, as Docker: net.ipv4.ip_unprivileged_port_start=0
                           and net.ipv4.ping_group_range=0 2147483647
  -v, --volume HOST:CTR[:ro]  bind mount (HOST created as a directory if missing)
                           -v modes: ro, rw, a propagation (rprivate default,
                           private, rshared, shared, rslave, slave), z/Z (accepted:
                           no SELinux relabelling here)
  -v, --volume NAME:CTR[:ro][,nocopy]
                           a named volume (<store>/volumes/NAME, made on first
                           use, seeded from the image when empty; vol-ls, vol-rm)
  -v, --volume CTR         a new anonymous volume, as each image VOLUME
                           gets (removed with the container; ctr-rm -v)
      --mount type=bind,src=HOST,dst=CTR[,readonly][,bind-propagation=P]
      --mount type=tmpfs,dst=CTR[,tmpfs-size=SIZE][,tmpfs-mode=OCTAL]
      --mount type=volume[,src=NAME],dst=CTR[,readonly][,volume-nocopy]
                           Docker's --mount (a bind's source must exist); repeatable
      --tmpfs PATH[:OPTS]  mount a tmpfs (default options nosuid,nodev,noexec)
      --shm-size SIZE      size of /dev/shm (default 64m)
  -m, --memory SIZE        memory limit: 64m, 1g (and as much swap again, as Docker)
      --memory-swap SIZE   memory plus swap (at least --memory; -1 unlimited swap)
      --ulimit NAME=SOFT[:HARD]
                           a resource limit (nofile, nproc, core, memlock, stack...);
                           repeatable
      --oom-score-adj N    -1000 to 1000
      --cpus N             CPU quota, fractional: 0.5
      --pids-limit N       maximum number of processes
Terminal and lifetime:
  -i, --interactive        attach stdin (reopens /dev/tty when stdin is the record)
  -t, --tty                allocate a terminal
  -d, --detach             start in the background under a supervisor and print a
                           \`container\` record; output goes to the container's log
                           (read it with ctr-logs); the stopped container stays
                           until ctr-rm
      --log-opt max-size=SIZE, --log-opt max-file=N
                           -d: rotate the log at SIZE (default 10m), keep N files
                           (default 3)
      --keep               keep the container directory after exit (with -d:
                           keep the overlay mounted too)
      --restart POLICY     -d: no (default), on-failure[:N], always or unless-stopped:
                           the supervisor runs the container again when it ends
                           (not after ctr-stop); backoff 100 ms doubling
      --rm                 remove after exit (with -d: the supervisor removes the
                           container when it ends; without -d it is the default)
      --name NAME          a name unique in the store; ctr-logs, ctr-stop, ctr-rm...
                           take it instead of the id
      --record FILE        read the record from FILE instead of stdin
Runtime:
      --check-flags        check the flags (and read --env-file, seccomp profiles),
                           exit 0 or 125, read no record and run nothing
      --print-spec         print the OCI runtime spec (config.json) as one line and stop
      --spec FILE          run with this (edited) spec instead of building one
      --runtime PATH       OCI runtime (default runc; crun works where it works)
      --runtime-root DIR   the runtime's state directory (default /run/conveyor-runc;
                           rootless <store>/runtime)
      --root DIR           store root for records without \`store\`
      --log-format FORMAT  text (default) or json
  -q, --quiet              fewer messages
  -h, --help               show this help
      --version            print the version

Examples:
  img-ls busybox | layer-unpack | ctr-spawn -- echo hello
  layer-unpack < image.json | ctr-spawn -m 64m --pids-limit 100 -- sh -c 'make test'
  ctr-spawn --record rootfs.json -it -- sh
  ctr-spawn -v /srv/data:/data:ro -e DEBUG=1 -u 1000:1000 -- ls /data < rootfs.json
  ctr-spawn --print-spec < rootfs.json | jq '.process.env += ["X=1"]' > spec.json
  ctr-spawn --spec spec.json < rootfs.json
  ctr-spawn -d --name web -- httpd -f < rootfs.json   # prints a container record
  ctr-spawn -u 1000 -- httpd -f -p 80 < rootfs.json     # port 80 without root, as Docker
  ctr-spawn --device /dev/fuse --cap-add SYS_ADMIN --ulimit nofile=4096 -- sh < rootfs.json
  ctr-spawn --pid container:web --ipc container:web -- ps < rootfs.json
  ctr-spawn --net container:web -- nc 127.0.0.1 80 < rootfs.json   # web's localhost
  ctr-spawn --add-host host.containers.internal:host-gateway -- sh < rootfs.json
  ctr-spawn -d -p 127.0.0.1:8080:80 -- httpd -f -p 80 < rootfs.json   # curl 127.0.0.1:8080
  ctr-logs -f web

Exit status: the container's own code; 125 ctr-spawn failed (bad flags,
runtime missing, mount failed); 126 command not executable; 127 command not found.
`;

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

// Once nothing is left to do (beforeExit: no handle, no write pending), exit at once: the 'exit' handlers run as
// always, and Node's tear-down of the environment and the heap, a few ms a run that no one waits for, is skipped.
process.once('beforeExit', () => process.exit());

await runCli({
  name: 'ctr-spawn',
  help: HELP,
  // Run by a user: inside the store's user namespace (lib-common/rootless), where it mounts and runs runc as that
  // namespace's root. --check-flags (conveyor-run, before its pull) needs no namespace.
  userNamespace: (args) => !args['check-flags'],
  spec: SPAWN_FLAGS,
  exitCodeFor: (error) => (error.exitCode === EXIT.NOT_EXECUTABLE || error.exitCode === EXIT.NOT_FOUND ? error.exitCode : EXIT.SPAWN_FAILED),
  // In the foreground stdout is the container's: no error record goes there.
  recordsOnStdout: (args) => Boolean(args.detach || args['print-spec']),
  main: async (ctx) => {
    // CONVEYOR_TRACE=1: where the time goes, phase by phase, on stderr (trace.ts).
    const trace = ctx.env.CONVEYOR_TRACE === '1' ? createTrace('ctr-spawn', (line) => ctx.stderr.write(line)) : NO_TRACE;
    if (trace !== NO_TRACE) {
      // Read only when traced: the `performance` global loads perf_hooks (a dozen of Node's modules).
      trace.mark('node-started', performance.nodeTiming.bootstrapComplete);
      process.on('exit', () => trace.mark('exit'));
    }
    trace.mark('cli-loaded');
    const args = ctx.args;
    if (args._.length > 0) {
      throw new ConveyorError('ERR_USAGE', `unexpected argument ${JSON.stringify(args._[0])}`, { hint: 'put the command after --: ctr-spawn -- echo hi' });
    }
    if (flag(args, 'net') !== undefined && flag(args, 'network') !== undefined && flag(args, 'net') !== flag(args, 'network'))
      throw new ConveyorError('ERR_USAGE', '--net and --network disagree', { hint: '--network is --net: give one' });
    // Loaded here, not at the top: --help and --version need none of them (the store, lock and option modules bring
    // crypto, child_process, dgram and net with them).
    const [{ readEnvFile, resolveEnvEntries }, { CONTAINER_NAME }, { startTime }, driver, { isRootless }] = await Promise.all([
      import('@conveyor/lib-common/container/env'),
      import('@conveyor/lib-common/container/state'),
      import('@conveyor/lib-common/lock'),
      import('@conveyor/lib-common/overlay/driver'),
      import('@conveyor/lib-common/rootless/detect'),
    ]);
    const {
      loadSeccompProfile,
      parseCpus,
      parseDockerRunFlags,
      parseLogOpts,
      checkNetworkFlags,
      parseDnsFlags,
      parseNet,
      parseSecurityOpts,
      parseTmpfs,
      parseVolume,
    } = await import('./options.js');
    const { combineMappings, parsePublish } = await import('./ports/publish.js');
    const { findProgram, hostHasDefaultRoute } = await import('./host.js');
    trace.mark('modules-loaded');
    const rootless = isRootless();
    const network = parseNet(flag(args, 'network') ?? flag(args, 'net'), (program) => findProgram(program, ctx.env.PATH), hostHasDefaultRoute);
    const net = network.mode;
    const memoryRaw = flag(args, 'memory');
    const memory = memoryRaw === undefined ? undefined : parseBytes(memoryRaw, '--memory');
    if (memory !== undefined && memory < 6 * 1024 * 1024) throw new ConveyorError('ERR_USAGE', '--memory must be at least 6m');
    const cpus = flag(args, 'cpus');
    const entrypoint = flag(args, 'entrypoint');
    const envFiles = args['env-file'] as string[];
    const env = [...(await Promise.all(envFiles.map((f) => readEnvFile(f, ctx.env)))).flat(), ...resolveEnvEntries(args.env as string[], ctx.env)];
    const security = parseSecurityOpts(args['security-opt'] as string[]);
    const {
      memorySwap,
      volumes: mountBinds,
      tmpfs: mountTmpfs,
      ...docker
    } = parseDockerRunFlags(args, { memory, netHost: net === 'host' || net === 'container' });
    const options: SpawnOptions = {
      root: ctx.root,
      runtime: flag(args, 'runtime') ?? 'runc',
      // Rootless, runc's state goes in the store (rootless.ts): /run is not the user's.
      runtimeRoot: flag(args, 'runtime-root') ?? (rootless ? join(ctx.root, 'runtime') : '/run/conveyor-runc'),
      rootless,
      overlayDriver: driver.parseDriver(ctx.env[driver.DRIVER_ENV]),
      entrypoint: entrypoint === undefined ? undefined : entrypoint === '' ? [] : [entrypoint],
      command: args['--'],
      env,
      workdir: flag(args, 'workdir'),
      user: flag(args, 'user'),
      hostname: flag(args, 'hostname'),
      name: flag(args, 'name'),
      netHost: net === 'host',
      readOnly: Boolean(args['read-only']),
      privileged: Boolean(args.privileged),
      seccompUnconfined: security.seccompUnconfined,
      seccompProfile: security.seccompProfileFile === undefined ? undefined : await loadSeccompProfile(security.seccompProfileFile),
      arch: process.arch,
      capAdd: args['cap-add'] as string[],
      capDrop: args['cap-drop'] as string[],
      volumes: (args.volume as string[]).map(parseVolume),
      tmpfs: (args.tmpfs as string[]).map(parseTmpfs),
      limits: {
        memory,
        memorySwap,
        cpus: cpus === undefined ? undefined : parseCpus(cpus),
        pids: flag(args, 'pids-limit') === undefined ? undefined : intFlag(args, 'pids-limit', 0, 1, 4194304),
      },
      interactive: Boolean(args.interactive),
      tty: Boolean(args.tty),
      init: Boolean(args.init),
      keep: Boolean(args.keep),
      autoRemove: Boolean(args.rm),
      detach: Boolean(args.detach),
      log: parseLogOpts(args['log-opt'] as string[]),
      printSpec: Boolean(args['print-spec']),
      specFile: flag(args, 'spec'),
      noNewPrivileges: security.noNewPrivileges,
      ...docker,
      network,
      dns: parseDnsFlags(args.dns as string[], args['dns-search'] as string[], args['dns-option'] as string[]),
      publish: combineMappings((args.publish as string[]).flatMap(parsePublish)),
      publishAll: Boolean(args['publish-all']),
    };
    checkNetworkFlags(network, {
      hostname: options.hostname !== undefined,
      addHosts: options.addHosts ?? [],
      dns: options.dns !== undefined,
      publish: (Array.isArray(args.publish) && args.publish.length > 0) || Boolean(args['publish-all']),
    });
    // Refused rather than ignored (Docker warns and ignores): on the host's network a port is the container's own already.
    if (network.mode === 'host' && (options.publish?.length || options.publishAll))
      throw new ConveyorError('ERR_USAGE', '-p/-P conflict with --net host', { hint: "a service on the host's network listens on the host already" });
    options.volumes.push(...mountBinds);
    options.tmpfs.push(...mountTmpfs);
    if (options.uts?.mode === 'host' && options.hostname !== undefined)
      throw new ConveyorError('ERR_USAGE', '--hostname and --uts host conflict', { hint: "the host's UTS namespace has the host's name" });
    // Host facts checked now, so --check-flags (conveyor-run, before its pull) sees them.
    for (const bind of mountBinds) {
      if (bind.mustExist && !existsSync(bind.source)) throw new ConveyorError('ERR_USAGE', `--mount: bind source path does not exist: ${bind.source}`);
    }
    if (options.devices?.length) {
      const { hostDevice } = await import('./host.js');
      for (const device of options.devices) hostDevice(device.hostPath, device.containerPath, device.access);
    }
    if (options.detach && (options.interactive || options.tty)) throw new ConveyorError('ERR_USAGE', '-d cannot be combined with -i or -t');
    if (options.keep && options.autoRemove) throw new ConveyorError('ERR_USAGE', '--keep and --rm contradict each other');
    if (options.name !== undefined && !CONTAINER_NAME.test(options.name)) {
      throw new ConveyorError('ERR_USAGE', `invalid container name ${JSON.stringify(options.name)}`, {
        hint: 'a name is 1 to 128 of [a-zA-Z0-9_.-], starting with a letter or digit',
      });
    }
    const restartRaw = flag(args, 'restart');
    const restart = restartRaw === undefined ? undefined : (await import('./supervisor/restart.js')).parseRestartPolicy(restartRaw);
    if (restart && restart.name !== 'no') {
      if (!options.detach)
        throw new ConveyorError('ERR_USAGE', '--restart needs -d', { hint: 'a restarted container runs under the supervisor of a detached one' });
      if (options.autoRemove) throw new ConveyorError('ERR_USAGE', '--restart and --rm contradict each other', { hint: 'Docker refuses them together too' });
    }
    // conveyor-run checks every flag this way before it pulls anything.
    if (args['check-flags']) return 0;
    const recordFile = flag(args, 'record');
    const runOptions = { ...options, restart };
    trace.mark('flags');
    // Loaded after the flags are checked: --check-flags (conveyor-run, before it pulls) never needs it.
    const { spawnContainer } = await import('./spawn.js');
    trace.mark('spawn-loaded');
    return spawnContainer(runOptions, {
      // A getter's stream (process.stdin is made on first use): a file is read without one (spawn.ts).
      input: () => (recordFile ? createReadStream(recordFile) : ctx.stdin),
      inputFile: recordFile ? { path: recordFile } : { fd: 0 },
      inputIsStdin: !recordFile,
      fds: { stdin: 0, stdout: 1, stderr: 2 },
      out: ctx.out,
      log: ctx.log,
      // isatty(0), not process.stdin.isTTY: that getter makes process.stdin, a stream, on every run. Asked only with -i
      // or -t, the only runs that read it (container/tty.ts containerStdin): node:tty loads node:net and node:stream.
      stdinIsTTY: options.interactive || options.tty ? (await import('node:tty')).isatty(0) : false,
      self: { pid: process.pid, startTime: startTime('self') },
      execPath: process.execPath,
      detachPause: ctx.env.CONVEYOR_TEST_DETACH_PAUSE,
      isRoot: process.getuid?.() === 0,
      kill: (pid, signal) => process.kill(pid, signal),
      trace,
      signals: (handler) => {
        for (const signal of FORWARDED) process.on(signal, handler);
        return () => {
          for (const signal of FORWARDED) process.off(signal, handler);
        };
      },
    });
  },
});
