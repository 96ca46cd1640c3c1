/**
 * Per-path bookkeeping kept as a tree of path components, so that what the
 * applier does to a directory costs what it touches: forgetting a removed
 * subtree is one detach, listing what a layer wrote in a directory reads
 * that directory's children. (Flat maps keyed by path made every directory
 * removal and opaque marker scan all entries: quadratic in the layer.)
 */

export class PathNode<V> {
  children: Map<string, PathNode<V>> | undefined;
  constructor(
    readonly parent: PathNode<V> | undefined,
    readonly name: string,
    readonly value: V,
  ) {}

  child(name: string): PathNode<V> | undefined {
    return this.children?.get(name);
  }

  /** The path from the tree's root ('' for the root). */
  rel(): string {
    if (!this.parent) return '';
    const parts: string[] = [];
    for (let n: PathNode<V> | undefined = this; n?.parent; n = n.parent) parts.push(n.name);
    return parts.reverse().join('/');
  }
}

export class PathTree<V> {
  readonly root: PathNode<V>;

  constructor(private readonly make: () => V) {
    this.root = new PathNode<V>(undefined, '', make());
  }

  /** The child `name` of `node`, created (with a fresh value) if missing. */
  ensureChild(node: PathNode<V>, name: string): PathNode<V> {
    let child = node.children?.get(name);
    if (!child) {
      child = new PathNode(node, name, this.make());
      (node.children ??= new Map()).set(name, child);
    }
    return child;
  }

  /** The node at `parts` (all of them, or the first `n`); created when `create`, else undefined if missing. */
  find(parts: readonly string[], create: boolean, n = parts.length): PathNode<V> | undefined {
    let node: PathNode<V> | undefined = this.root;
    for (let i = 0; i < n && node; i++) node = create ? this.ensureChild(node, parts[i]) : node.child(parts[i]);
    return node;
  }

  /** Forgets `node` and everything under it. The root cannot be removed. */
  remove(node: PathNode<V>): void {
    node.parent?.children?.delete(node.name);
  }

  /**
   * Every node but the root with its path, parents before children (or,
   * with `childrenFirst`, every node after all of its descendants). An
   * explicit stack, not recursion: a tree may be thousands of levels deep.
   */
  walk(childrenFirst = false): [string, PathNode<V>][] {
    const out: [string, PathNode<V>][] = [];
    const stack: [string, PathNode<V>][] = [['', this.root]];
    while (stack.length > 0) {
      const [rel, node] = stack.pop()!;
      if (node !== this.root) out.push([rel, node]);
      if (node.children) for (const [name, child] of node.children) stack.push([rel === '' ? name : `${rel}/${name}`, child]);
    }
    return childrenFirst ? out.reverse() : out;
  }
}
