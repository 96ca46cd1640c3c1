/**
 * The dependency rules of docs/architecture.md, enforced as crane's
 * depcheck_test does. The parts: lib-common core (lib-common/src/*.ts), the
 * overlay module folder (lib-common/src/overlay/), the workspace packages
 * under lib-common/ (the registry client, lib-common/registry/), the tools
 * (tools/<name>/src) and the zx scripts (scripts/).
 *
 *  - no tool imports another tool;
 *  - nothing in lib-common (core, overlay, packages) imports a tool;
 *  - core imports neither the overlay folder nor a package under lib-common/;
 *  - the overlay folder imports only core;
 *  - the container folder (lib-common/src/container/: container state,
 *    runtime calls, cgroups) imports only core and the overlay folder;
 *  - a package under lib-common/ imports only core (and node: builtins);
 *  - a script imports of a tool only its exported flag specification;
 *  - library modules (every file but cli.ts) never touch the process's
 *    stdio, arguments, environment, exit status or cwd; the few process facts
 *    some read (a pid, the euid, the architecture) are listed below, each
 *    with its reason, and nothing else is allowed.
 *
 * Files are read with TypeScript's own parser, so comments and strings that
 * name `process.stdout` or an import do not count, and type-only imports do.
 */
import t from 'tap';
import type tap from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { REPO_ROOT } from './helpers/fixtures.js';

const LIB = join(REPO_ROOT, 'lib-common');
const tools = readdirSync(join(REPO_ROOT, 'tools')).filter((d) => existsSync(join(REPO_ROOT, 'tools', d, 'package.json')));
/** Workspace packages under lib-common/ (the registry client), by directory and package name. */
const packages = readdirSync(LIB, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(LIB, d.name, 'package.json')))
  .map((d) => ({ dir: join(LIB, d.name), name: JSON.parse(readFileSync(join(LIB, d.name, 'package.json'), 'utf8')).name as string }));
const toolNames = new Map(tools.map((tool) => [JSON.parse(readFileSync(join(REPO_ROOT, 'tools', tool, 'package.json'), 'utf8')).name as string, tool]));

/**
 * Process facts a library module may read, by file: property → why. Every
 * other `process.*` outside cli.ts fails. lib-common's README lists these.
 */
const PROCESS_ALLOWED: Record<string, Record<string, string>> = {
  'lib-common/src/store.ts': {
    pid: 'names temporary files beside their target (writeFileAtomic)',
    geteuid: 'assertTrustedStore: a store is trusted when root or the caller owns it',
  },
  'lib-common/src/lock.ts': {
    pid: "a lock's owner token is this process",
    kill: "signal 0: whether a lock's owner still runs",
  },
  'lib-common/src/digest.ts': {
    getBuiltinModule: 'node:crypto loaded synchronously on first use, not at start-up (issue 17: a warm read hashes in JavaScript)',
  },
  'lib-common/src/subprocess.ts': {
    getBuiltinModule: 'node:child_process loaded on first use, not at start-up (issue 17: the runtime starts without it)',
    binding: "Node's process handle (process_wrap), which node:child_process wraps: a child without pipes starts without loading it",
  },
  'lib-common/src/platform.ts': {
    arch: 'hostPlatform: the platform this machine runs',
    platform: 'hostPlatform: the platform this machine runs',
  },
};

type Part =
  | { kind: 'core' }
  | { kind: 'overlay' }
  | { kind: 'container' }
  | { kind: 'package'; name: string }
  | { kind: 'tool'; name: string }
  | { kind: 'script' }
  | { kind: 'builtin' }
  | { kind: 'external'; name: string }
  | { kind: 'other'; path: string };

/** Which part a file of the tree belongs to. */
function partOfPath(path: string): Part {
  const rel = relative(REPO_ROOT, path).split(sep).join('/');
  for (const p of packages) if (path === p.dir || path.startsWith(p.dir + sep)) return { kind: 'package', name: p.name };
  if (rel.startsWith('lib-common/src/overlay/') || rel.startsWith('lib-common/dist/overlay/')) return { kind: 'overlay' };
  if (rel.startsWith('lib-common/src/container/') || rel.startsWith('lib-common/dist/container/')) return { kind: 'container' };
  if (rel.startsWith('lib-common/')) return { kind: 'core' };
  const tool = /^tools\/([^/]+)\//.exec(rel);
  if (tool) return { kind: 'tool', name: tool[1] };
  if (rel.startsWith('scripts/')) return { kind: 'script' };
  return { kind: 'other', path: rel };
}

/** Which part an import specifier names, seen from `file`. */
function partOfImport(file: string, spec: string): Part {
  if (spec.startsWith('.') || spec.startsWith('/')) return partOfPath(resolve(dirname(file), spec));
  if (spec.startsWith('node:') || builtinModules.includes(spec)) return { kind: 'builtin' };
  const scoped = spec.startsWith('@');
  const name = spec
    .split('/')
    .slice(0, scoped ? 2 : 1)
    .join('/');
  if (name === '@conveyor/lib-common') {
    if (spec.startsWith('@conveyor/lib-common/overlay/')) return { kind: 'overlay' };
    return spec.startsWith('@conveyor/lib-common/container/') ? { kind: 'container' } : { kind: 'core' };
  }
  if (packages.some((p) => p.name === name)) return { kind: 'package', name };
  if (toolNames.has(name)) return { kind: 'tool', name: toolNames.get(name)! };
  return { kind: 'external', name };
}

function describe(part: Part): string {
  switch (part.kind) {
    case 'tool':
      return `tool ${part.name}`;
    case 'package':
      return `package ${part.name}`;
    case 'external':
      return `module ${part.name}`;
    case 'other':
      return part.path;
    default:
      return part.kind;
  }
}

function sources(dir: string, ext = /\.ts$/): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => ext.test(f) && !f.endsWith('.d.ts') && !f.split(sep).includes('node_modules'))
    .map((f) => join(dir, f));
}

/** Every module specifier the file imports or re-exports, static, dynamic or type-only. */
function imports(file: string): string[] {
  return ts.preProcessFile(readFileSync(file, 'utf8'), true, true).importedFiles.map((f) => f.fileName);
}

/** Each use of the global `process`: the property read (`pid`), or `(value)` when process itself is passed around. */
function processUses(file: string): { property: string; line: number }[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const uses: { property: string; line: number }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isIdentifier(node) && node.text === 'process') {
      const parent = node.parent;
      const line = source.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      const isName =
        (ts.isPropertyAccessExpression(parent) && parent.name === node) ||
        ((ts.isPropertyAssignment(parent) || ts.isPropertySignature(parent) || ts.isPropertyDeclaration(parent) || ts.isMethodDeclaration(parent)) &&
          parent.name === node) ||
        ts.isQualifiedName(parent);
      if (!isName) {
        if (ts.isPropertyAccessExpression(parent) && parent.expression === node) uses.push({ property: parent.name.text, line });
        else if (ts.isElementAccessExpression(parent) && parent.expression === node) uses.push({ property: '[]', line });
        else uses.push({ property: '(value)', line });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return uses;
}

/** A library module: anything but a cli.ts (a tool's, or lib-common's runner). */
const isLibraryModule = (file: string) => !file.endsWith(`${sep}cli.ts`);

function checkProcess(t: typeof tap, file: string): void {
  if (!isLibraryModule(file)) return;
  const rel = relative(REPO_ROOT, file).split(sep).join('/');
  const allowed = PROCESS_ALLOWED[rel] ?? {};
  for (const use of processUses(file)) {
    t.ok(use.property in allowed, `${rel}:${use.line}: library module touches process.${use.property}; pass it in from cli.ts`);
  }
  for (const spec of imports(file)) t.not(spec.replace(/^node:/, ''), 'process', `${rel} imports node:process`);
}

const libraryFiles = {
  core: readdirSync(join(LIB, 'src'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(LIB, 'src', f)),
  overlay: sources(join(LIB, 'src', 'overlay')),
  container: sources(join(LIB, 'src', 'container')),
  packages: packages.flatMap((p) => sources(join(p.dir, 'src'))),
};

t.test('the parts exist where the rules expect them', async (t) => {
  t.ok(libraryFiles.core.length > 10, 'lib-common core');
  t.ok(libraryFiles.overlay.length > 0, 'lib-common/src/overlay');
  t.ok(libraryFiles.container.length > 0, 'lib-common/src/container');
  t.ok(
    packages.some((p) => p.name === '@conveyor/registry' || /registry/.test(p.dir)),
    'the registry package under lib-common/',
  );
  t.ok(libraryFiles.packages.length > 0, 'package sources');
  t.ok(tools.length >= 5, 'tools');
  for (const part of [...libraryFiles.core, ...libraryFiles.overlay, ...libraryFiles.container]) {
    t.equal(partOfPath(part).kind, part.includes(`${sep}overlay${sep}`) ? 'overlay' : part.includes(`${sep}container${sep}`) ? 'container' : 'core');
  }
  // The classifier itself, so a rule cannot pass because nothing was recognised.
  t.strictSame(partOfImport(join(REPO_ROOT, 'tools/img-ls/src/cli.ts'), '../../overlay-mount/src/mount.js'), { kind: 'tool', name: 'overlay-mount' });
  t.strictSame(partOfImport(join(REPO_ROOT, 'tools/img-ls/src/cli.ts'), '@conveyor/lib-common/overlay/mount'), { kind: 'overlay' });
  t.strictSame(partOfImport(join(REPO_ROOT, 'tools/img-ls/src/cli.ts'), 'overlay-mount'), { kind: 'tool', name: 'overlay-mount' });
  t.ok(
    processUses(join(REPO_ROOT, 'lib-common/src/cli.ts')).some((u) => u.property === 'stdout'),
    'process uses are seen',
  );
});

for (const tool of tools) {
  for (const file of sources(join(REPO_ROOT, 'tools', tool, 'src'))) {
    t.test(relative(REPO_ROOT, file), async (t) => {
      for (const spec of imports(file)) {
        const part = partOfImport(file, spec);
        t.notOk(part.kind === 'tool' && part.name !== tool, `imports another tool: ${spec}`);
        t.notOk(part.kind === 'script' || part.kind === 'other', `imports ${describe(part)}: ${spec}`);
      }
      checkProcess(t, file);
    });
  }
}

for (const file of libraryFiles.core) {
  t.test(relative(REPO_ROOT, file), async (t) => {
    for (const spec of imports(file)) {
      const part = partOfImport(file, spec);
      t.ok(part.kind === 'core' || part.kind === 'builtin' || part.kind === 'external', `lib-common core imports ${describe(part)}: ${spec}`);
    }
    checkProcess(t, file);
  });
}

for (const file of libraryFiles.overlay) {
  t.test(relative(REPO_ROOT, file), async (t) => {
    for (const spec of imports(file)) {
      const part = partOfImport(file, spec);
      t.ok(part.kind === 'core' || part.kind === 'overlay' || part.kind === 'builtin', `the overlay folder imports ${describe(part)}: ${spec}`);
    }
    checkProcess(t, file);
  });
}

for (const file of libraryFiles.container) {
  t.test(relative(REPO_ROOT, file), async (t) => {
    for (const spec of imports(file)) {
      const part = partOfImport(file, spec);
      t.ok(
        part.kind === 'core' || part.kind === 'overlay' || part.kind === 'container' || part.kind === 'builtin',
        `the container folder imports ${describe(part)}: ${spec}`,
      );
    }
    checkProcess(t, file);
  });
}

for (const pkg of packages) {
  for (const file of sources(join(pkg.dir, 'src'))) {
    t.test(relative(REPO_ROOT, file), async (t) => {
      for (const spec of imports(file)) {
        const part = partOfImport(file, spec);
        const own = part.kind === 'package' && part.name === pkg.name;
        t.ok(own || part.kind === 'core' || part.kind === 'builtin', `${pkg.name} imports ${describe(part)}: ${spec} (only lib-common core)`);
      }
      checkProcess(t, file);
    });
  }
}

t.test('scripts import of a tool only its exported flag specification', async (t) => {
  for (const file of sources(join(REPO_ROOT, 'scripts'), /\.(mjs|js|ts)$/)) {
    for (const spec of imports(file)) {
      const part = partOfImport(file, spec);
      if (part.kind !== 'tool') continue;
      t.match(spec, /\/flags(\.js)?$/, `${relative(REPO_ROOT, file)} imports ${spec}: scripts run tools, importing only their flag spec`);
    }
  }
});

t.test('every tool is a complete package', async (t) => {
  for (const tool of tools) {
    const dir = join(REPO_ROOT, 'tools', tool);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    t.equal(pkg.bin?.[tool], `bin/${tool}.js`, `${tool} has a bin`);
    t.ok(existsSync(join(dir, 'README.md')), `${tool} has a README`);
    t.ok(existsSync(join(dir, 'src', 'cli.ts')), `${tool} has src/cli.ts`);
  }
});

t.test('every package under lib-common/ has its README and entry points', async (t) => {
  for (const pkg of packages) {
    const manifest = JSON.parse(readFileSync(join(pkg.dir, 'package.json'), 'utf8'));
    t.ok(existsSync(join(pkg.dir, 'README.md')), `${pkg.name} has a README`);
    t.ok(manifest.exports, `${pkg.name} declares its exports`);
  }
});

t.test("lib-common's README lists every module and every process fact a library module reads", async (t) => {
  const readme = readFileSync(join(LIB, 'README.md'), 'utf8');
  const modules = [...libraryFiles.core, ...libraryFiles.overlay, ...libraryFiles.container].map((f) =>
    relative(join(LIB, 'src'), f).replace(/\.ts$/, '').split(sep).join('/'),
  );
  for (const module of modules) t.ok(readme.includes(`\`${module}\``), `README lists \`${module}\``);
  for (const [file, properties] of Object.entries(PROCESS_ALLOWED)) {
    for (const property of Object.keys(properties)) t.ok(readme.includes(`process.${property}`), `README names process.${property} (${file})`);
  }
});
