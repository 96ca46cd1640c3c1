/**
 * The fault-test set-up img-fetch's fault tests share: a real registry with
 * basic auth (carol:pa55) holding busybox as bb:latest, the fault proxy in
 * front of it, and a Docker config with the credentials for both hosts;
 * `withRule` installs a proxy rule for one test.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { busyboxLayout } from '../../../test/helpers/fixtures.js';
import {
  pushImage,
  startFaultProxy,
  startRegistry,
  type FaultAction,
  type FaultProxy,
  type ProxiedRequest,
  type TestRegistry,
} from '../../../test/helpers/registry.js';

export interface AuthProxy {
  reg: TestRegistry;
  proxy: FaultProxy;
  /** DOCKER_CONFIG with carol's credentials for the registry and the proxy. */
  dockerConfig: string;
  stop(): Promise<void>;
}

/** Starts the registry (busybox pushed as bb:latest) and the proxy in front of it. */
export async function startAuthProxy(): Promise<AuthProxy> {
  const reg = await startRegistry({ htpasswd: { carol: 'pa55' } });
  await pushImage(`${busyboxLayout()}:latest`, reg, 'bb:latest');
  const proxy = await startFaultProxy(`http://${reg.host}`);
  const dockerConfig = join(reg.dir, 'docker');
  mkdirSync(dockerConfig, { recursive: true });
  const auth = Buffer.from('carol:pa55').toString('base64');
  writeFileSync(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth }, [proxy.host]: { auth } } }));
  return {
    reg,
    proxy,
    dockerConfig,
    stop: async () => {
      await proxy.stop();
      await reg.stop();
    },
  };
}

/**
 * Installs `rule` on the proxy until the test ends and returns the requests the
 * proxy sees meanwhile; `n` counts earlier requests with the same method and URL
 * from the rule's installation.
 */
export function withRule(
  proxy: FaultProxy,
  t: { teardown(fn: () => void): void },
  rule: (req: ProxiedRequest, n: number) => FaultAction,
): () => ProxiedRequest[] {
  const start = proxy.requests.length;
  const counts = new Map<string, number>();
  proxy.rule = (req) => {
    const key = `${req.method} ${req.url}`;
    const n = counts.get(key) ?? 0;
    counts.set(key, n + 1);
    return rule(req, n);
  };
  t.teardown(() => {
    proxy.rule = () => ({ kind: 'pass' });
  });
  return () => proxy.requests.slice(start);
}
