// A private Redis Cluster for the tests: masters (and replicas), each a
// redis-server --cluster-enabled yes on free ports (the bus port too),
// joined by redis-cli --cluster create. It never touches a Redis already
// running.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createClient } from 'redis';
import { exited, freePort, waitForPort } from './harness.mjs';

export async function startRedisCluster({ masters = 3, replicas = 0 } = {}) {
  for (const bin of ['redis-server', 'redis-cli']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) throw new Error(`${bin} is missing: apt-get install -y redis-server`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-redis-cluster-'));
  const nodes = [];
  const stop = async () => {
    await Promise.all(nodes.map(async (n) => {
      if (n.proc.exitCode === null && n.proc.signalCode === null) { n.proc.kill('SIGKILL'); await exited(n.proc); }
    }));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      const port = await freePort();
      const bus = await freePort();
      const nodeDir = mkdtempSync(path.join(dir, `n${i}-`));
      const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
        '--dir', nodeDir, '--protected-mode', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
        '--cluster-port', String(bus), '--cluster-node-timeout', '1000', '--repl-diskless-sync-delay', '0'],
      { stdio: ['ignore', 'ignore', 'inherit'] });
      nodes.push({ port, proc });
      await waitForPort(port);
    }
    const create = spawn('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`),
      '--cluster-replicas', String(replicas), '--cluster-yes'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    create.stdout.on('data', (d) => { out += d; });
    create.stderr.on('data', (d) => { out += d; });
    const code = await exited(create);
    if (code !== 0) throw new Error(`redis-cli --cluster create exited ${code}:\n${out}`);
    await waitClusterOk(nodes.map((n) => n.port));
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    ports: nodes.map((n) => n.port),
    url: `redis://127.0.0.1:${nodes[0].port}`,
    stop,
    // numShardSub sums PUBSUB SHARDNUMSUB of channel over every node.
    async numShardSub(channel) {
      let total = 0;
      for (const n of nodes) {
        const c = createClient({ url: `redis://127.0.0.1:${n.port}` });
        c.on('error', () => {});
        await c.connect();
        try {
          const res = await c.sendCommand(['PUBSUB', 'SHARDNUMSUB', channel]);
          total += Number(res[1]);
        } finally {
          await c.quit().catch(() => c.disconnect());
        }
      }
      return total;
    },
  };
}

async function waitClusterOk(ports) {
  const deadline = Date.now() + 30000;
  for (;;) {
    let ok = true;
    for (const port of ports) {
      const c = createClient({ url: `redis://127.0.0.1:${port}` });
      c.on('error', () => {});
      try {
        await c.connect();
        const info = await c.sendCommand(['CLUSTER', 'INFO']);
        if (!String(info).includes('cluster_state:ok')) ok = false;
      } catch {
        ok = false;
      } finally {
        await c.quit().catch(() => c.disconnect());
      }
    }
    if (ok) return;
    if (Date.now() > deadline) throw new Error('the Redis Cluster did not reach cluster_state:ok within 30 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}
