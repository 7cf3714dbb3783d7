// Static checks of the Docker deployment, which cannot be started here (no
// Docker engine). What they do prove:
// - docker-compose.yml passes Docker Compose's own schema validation
//   (Debian's docker-compose 1.29 `config -q`, which needs no engine), and its
//   raw and resolved forms have the structure the cluster needs;
// - the balancer configs it mounts are deploy/haproxy.cfg (sticky, port 8080)
//   and deploy/haproxy-roundrobin.cfg (port 8081), which HAProxy accepts as
//   compose runs them (service names, container port 8080); each replica
//   advertises the address the others relay its sessions' requests to;
// - the compose files ship no secret: JWT_SECRET and API_KEY are required
//   variables (Compose refuses to start without them, pointing at
//   .env.example), dev tokens are off unless asked for, and .env.example
//   copied unfilled starts nothing;
// - the Dockerfile is multi-stage, ends as a non-root user with a healthcheck,
//   and its ./cmd/switchboard build succeeds on exactly the files .dockerignore
//   lets into the build context (with cgo off, the packages resolve; the
//   binary is built with CI's flags); the healthcheck command of that binary
//   tells a serving process from a stopped one.
// What they do not prove: that images pull, build and start under Docker; the
// same topology is exercised for real, with processes, by cluster-lb.test.mjs.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import YAML from 'yaml';
import { ROOT, exited, freePort, startSwitchboard } from './lib/harness.mjs';
import { HAPROXY_CFG, ROUND_ROBIN_CFG, requireHaproxy } from './lib/cluster.mjs';

const COMPOSE = path.join(ROOT, 'docker-compose.yml');
const DOCKERFILE = path.join(ROOT, 'Dockerfile');
const REPLICAS = ['sb1', 'sb2', 'sb3'];
const cleanEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
// The compose files ship no secret: a one-shot service generates them into
// a volume, unless JWT_SECRET and API_KEY are given. The tests give these
// (and check the files' way separately), and an empty --env-file so that a
// developer's .env does not change what they see.
const TEST_SECRETS = { JWT_SECRET: 'compose-test-jwt-secret-0123456789abcdef', API_KEY: 'compose-test-api-key' };
const composeEnv = { ...cleanEnv, ...TEST_SECRETS };
const EMPTY_ENV_FILE = path.join(mkdtempSync(path.join(os.tmpdir(), 'sb-compose-env-')), 'empty.env');
writeFileSync(EMPTY_ENV_FILE, '');
const compose = (args, { env = composeEnv, input } = {}) => spawnSync('docker-compose', ['--env-file', EMPTY_ENV_FILE, ...args],
  { cwd: ROOT, env, input, encoding: 'utf8' });

function requireCompose() {
  if (spawnSync('sh', ['-c', 'command -v docker-compose']).status !== 0) {
    throw new Error('docker-compose is missing (the offline validator): apt-get install -y docker-compose');
  }
}

// Both views of the file: the raw YAML (anchors merged, as Compose does) and
// what Compose itself resolves it to (interpolation, merges, normalised forms).
function raw() {
  return YAML.parse(readFileSync(COMPOSE, 'utf8'), { merge: true });
}
function resolved() {
  requireCompose();
  const r = compose(['-f', COMPOSE, 'config']);
  assert.equal(r.status, 0, `docker-compose config rejected the file:\n${r.stderr}`);
  return YAML.parse(r.stdout);
}

const envOf = (svc) => (Array.isArray(svc.environment)
  ? Object.fromEntries(svc.environment.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]))
  : svc.environment || {});
const healthyDeps = (svc) => Object.entries(svc.depends_on || {})
  .filter(([, v]) => v && v.condition === 'service_healthy').map(([k]) => k).sort();

// A balancer config's defaults: the upstreams and bind address compose relies on.
function cfgDefaults(file = HAPROXY_CFG) {
  const cfg = readFileSync(file, 'utf8');
  const servers = [...cfg.matchAll(/^\s*server (sb\d) "\$\{SB\d_ADDR-([\w.-]+):(\d+)\}"/gm)].map((m) => ({ name: m[1], host: m[2], port: m[3] }));
  const bind = /^\s*bind "\$\{LB_BIND-([^}]*)\}"/m.exec(cfg);
  return { servers, bind: bind && bind[1] };
}

function checkCompose(doc, label) {
  const s = doc.services;
  assert.deepEqual(Object.keys(s).sort(), ['lb', 'lb-roundrobin', 'redis', ...REPLICAS, 'secrets'], `${label}: services`);

  assert.match(s.redis.image, /^redis:/);
  assert.ok(s.redis.healthcheck, `${label}: redis has a healthcheck`);
  assert.match([].concat(s.redis.healthcheck.test).join(' '), /redis-cli.*ping/);

  const { servers } = cfgDefaults();
  assert.deepEqual(servers.map((x) => x.name), REPLICAS, 'haproxy.cfg names the three replicas');
  const envs = REPLICAS.map((n) => envOf(s[n]));
  for (const [i, n] of REPLICAS.entries()) {
    const svc = s[n];
    const env = envs[i];
    assert.ok(svc.build, `${label}: ${n} is built from the Dockerfile`);
    const ctx = typeof svc.build === 'string' ? svc.build : svc.build.context;
    assert.equal(path.resolve(ROOT, ctx), ROOT, `${label}: ${n} build context is the repository`);
    assert.match(env.REDIS_URL || '', /^redis:\/\/redis:6379\/\d+$/, `${label}: ${n} REDIS_URL points at the redis service`);
    assert.equal(env.NODE_ID, n);
    if (label === 'raw') {
      // No secret in the file: empty unless given, else the generated files.
      assert.equal(env.JWT_SECRET, '${JWT_SECRET:-}', `${label}: ${n} JWT_SECRET only from the environment`);
      assert.equal(env.API_KEY, '${API_KEY:-}', `${label}: ${n} API_KEY only from the environment`);
      assert.equal(env.DEV_TOKENS, '${DEV_TOKENS:-1}', `${label}: ${n} dev tokens on unless turned off`);
    } else {
      assert.equal(env.JWT_SECRET, TEST_SECRETS.JWT_SECRET, `${label}: ${n} JWT_SECRET from the environment`);
      assert.equal(env.API_KEY, TEST_SECRETS.API_KEY, `${label}: ${n} API_KEY from the environment`);
      assert.equal(String(env.DEV_TOKENS), '1', `${label}: ${n} dev tokens on by default (the balancers are on loopback)`);
    }
    assert.equal(env.JWT_SECRET_FILE, `${SECRETS_DIR}/jwt_secret`, `${label}: ${n} reads the generated secret`);
    assert.equal(env.API_KEY_FILE, `${SECRETS_DIR}/api_key`, `${label}: ${n} reads the generated API key`);
    assert.ok(mountsOf(svc).some(([src, target, mode]) => src === 'secrets' && target === SECRETS_DIR && mode === 'ro'),
      `${label}: ${n} mounts the secrets volume read-only at ${SECRETS_DIR}`);
    assert.equal((svc.depends_on || {}).secrets?.condition, 'service_completed_successfully', `${label}: ${n} starts once the secrets exist`);
    assert.deepEqual(healthyDeps(svc), ['redis'], `${label}: ${n} waits for a healthy redis`);
    // The balancer reaches the replica at the address haproxy.cfg defaults to.
    assert.equal(servers[i].host, n);
    assert.equal(/:(\d+)$/.exec(env.ADDR || ':7999')[1], servers[i].port, `${label}: ${n} listens where haproxy.cfg sends it`);
    // The other replicas relay n's sessions' requests to the same address.
    assert.equal(env.ADVERTISE_ADDR, `${n}:${servers[i].port}`, `${label}: ${n} advertises the address it is reached at`);
  }
  for (const key of ['JWT_SECRET', 'API_KEY', 'REDIS_URL']) {
    assert.equal(new Set(envs.map((e) => e[key])).size, 1, `${label}: ${key} shared by the three replicas`);
  }

  checkBalancer(s.lb, HAPROXY_CFG, '127.0.0.1:8080:8080', `${label}: lb`);
  checkBalancer(s['lb-roundrobin'], ROUND_ROBIN_CFG, '127.0.0.1:8081:8080', `${label}: lb-roundrobin`);

  // The secrets service writes into the volume the replicas read.
  assert.match(s.secrets.image, /^redis:/, `${label}: secrets runs an image the stack pulls anyway`);
  assert.ok(mountsOf(s.secrets).some(([src, target]) => src === 'secrets' && target === '/secrets'), `${label}: secrets mounts the volume`);
  assert.ok(doc.volumes && 'secrets' in doc.volumes, `${label}: the secrets volume is declared`);
}

// Where the replicas find the generated secrets.
const SECRETS_DIR = '/run/secrets/switchboard';
// mountsOf: a service's volumes as [source, target, mode].
const mountsOf = (svc) => (svc.volumes || []).map((v) => (typeof v === 'string'
  ? v.split(':')
  : [v.source, v.target, v.read_only ? 'ro' : 'rw']));

// checkBalancer: an HAProxy service that waits for the three replicas,
// publishes its container port 8080 as published says, and mounts cfgFile
// where the haproxy image reads its config.
function checkBalancer(lb, cfgFile, published, label) {
  assert.match(lb.image, /^haproxy:2\.6/, `${label}: the balancer image runs the HAProxy line the tests run`);
  assert.deepEqual(healthyDeps(lb), REPLICAS, `${label}: the balancer waits for three healthy replicas`);
  // Compose v1 resolves "127.0.0.1:8080:8080" to the same string with "/tcp".
  const ports = lb.ports.map((p) => (typeof p === 'string' ? p.replace(/\/tcp$/, '') : `${p.host_ip ? p.host_ip + ':' : ''}${p.published}:${p.target}`));
  assert.deepEqual(ports, [published], `${label}: the balancer publishes ${published}`);
  const { servers, bind } = cfgDefaults(cfgFile);
  assert.deepEqual(servers.map((x) => x.name), REPLICAS, `${label}: its config names the three replicas`);
  assert.equal(bind, ':8080', `${label}: its config listens on the published container port by default`);
  const mounts = lb.volumes.map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}${v.read_only ? ':ro' : ''}`));
  const cfgMount = mounts.map((m) => m.split(':')).find(([, target]) => target === '/usr/local/etc/haproxy/haproxy.cfg');
  assert.ok(cfgMount, `${label}: the balancer mounts its config where the haproxy image reads it`);
  assert.equal(path.resolve(ROOT, cfgMount[0]), cfgFile, `${label}: the mounted config is ${path.relative(ROOT, cfgFile)}`);
  assert.ok(existsSync(cfgFile));
}

describe('docker-compose.yml', () => {
  it('passes Docker Compose schema validation (docker-compose config -q)', () => {
    requireCompose();
    const r = compose(['-f', COMPOSE, 'config', '-q']);
    assert.equal(r.status, 0, r.stderr);
  });

  it('the validator is not a rubber stamp: a wrong depends_on condition is rejected', () => {
    requireCompose();
    const bad = readFileSync(COMPOSE, 'utf8').replace(/condition: service_healthy/g, 'condition: service_ready');
    const r = compose(['-f', '-', 'config', '-q'], { input: bad });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /condition/);
  });

  it('has redis with a healthcheck, three replicas sharing it and one secret, and the balancers on 8080 and 8081 (raw YAML)', () => {
    checkCompose(raw(), 'raw');
  });

  it('has the same structure as Compose resolves it', () => {
    checkCompose(resolved(), 'resolved');
  });

  it('mounts balancer configs that HAProxy accepts as compose runs them (no environment)', () => {
    requireHaproxy();
    for (const cfg of [HAPROXY_CFG, ROUND_ROBIN_CFG]) {
      const r = spawnSync('haproxy', ['-c', '-f', cfg], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.match(r.stdout + r.stderr, /Configuration file is valid/);
    }
  });
});

// Dockerfile parsing: instructions with line continuations joined.
function instructions() {
  const text = readFileSync(DOCKERFILE, 'utf8').replace(/\\\n/g, ' ');
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))
    .map((l) => { const m = /^(\w+)\s+(.*)$/.exec(l); return { op: m[1].toUpperCase(), arg: m[2].trim() }; });
}
function stages() {
  const out = [];
  for (const ins of instructions()) {
    if (ins.op === 'FROM') out.push({ from: ins.arg, steps: [] });
    else if (out.length) out.at(-1).steps.push(ins);
  }
  return out;
}

// ignorer returns a predicate: does .dockerignore keep this path out of the
// build context? (Docker's rules for the pattern forms this file uses: *, ?, **, a match on
// a directory excludes what is under it; "!" exceptions are refused here).
function ignorer() {
  const pats = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const res = pats.map((p) => {
    assert.ok(!p.startsWith('!') && /^[\w.*?/-]+$/.test(p), `.dockerignore pattern this check cannot interpret: ${p}`);
    const body = p.replace(/^\/+/, '').replace(/\/+$/, '').split(/(\*\*\/|\*\*|\*|\?)/).map((tok) => ({
      '**/': '(?:.*/)?', '**': '.*', '*': '[^/]*', '?': '[^/]',
    }[tok] ?? tok.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('');
    return new RegExp(`^${body}(?:/.*)?$`);
  });
  return (rel) => res.some((re) => re.test(rel));
}

// waitHealthy polls url until 200 (bounded), failing early if proc exits.
async function waitHealthy(url, proc, log) {
  for (let i = 0; i < 300; i++) {
    if (proc.exitCode !== null) throw new Error(`exited ${proc.exitCode}: ${log()}`);
    try { if ((await fetch(url)).status === 200) return; } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not healthy: ${log()}`);
}

// The cluster variant: docker-compose.yml with docker-compose.cluster.yml
// on top, as its header says to run it.
const COMPOSE_CLUSTER = path.join(ROOT, 'docker-compose.cluster.yml');
const CLUSTER_NODES = ['redis', 'redis-2', 'redis-3'];

function resolvedCluster() {
  requireCompose();
  const r = compose(['-f', COMPOSE, '-f', COMPOSE_CLUSTER, 'config']);
  assert.equal(r.status, 0, `docker-compose config rejected the cluster variant:\n${r.stderr}`);
  return YAML.parse(r.stdout);
}

describe('docker-compose.cluster.yml (the Redis Cluster variant)', () => {
  it('passes Docker Compose schema validation on top of docker-compose.yml', () => {
    requireCompose();
    const r = compose(['-f', COMPOSE, '-f', COMPOSE_CLUSTER, 'config', '-q']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(readFileSync(COMPOSE_CLUSTER, 'utf8'), /docker compose -f docker-compose\.yml -f docker-compose\.cluster\.yml up/,
      'the file says how to run it');
  });

  it('runs three cluster nodes, joins them once, and the replicas on them with the sharded adapter', () => {
    const doc = resolvedCluster();
    const s = doc.services;
    // The base file's services, and the two cluster nodes and the one-shot
    // service it adds.
    const base = Object.keys(raw().services);
    assert.deepEqual(Object.keys(s).sort(), [...new Set([...base, ...CLUSTER_NODES, 'redis-cluster'])].sort());
    for (const n of CLUSTER_NODES) {
      const cmd = [].concat(s[n].command).join(' ');
      assert.match(s[n].image, /^redis:7/, `${n}: Redis 7 (sharded pub/sub)`);
      assert.match(cmd, /--cluster-enabled yes/, `${n} is a cluster node`);
      assert.match([].concat(s[n].healthcheck.test).join(' '), /redis-cli.*ping/, `${n} has a healthcheck`);
    }
    const init = s['redis-cluster'];
    assert.deepEqual(healthyDeps(init), CLUSTER_NODES, 'the cluster is created once every node answers');
    const script = [].concat(init.entrypoint, init.command).join(' ');
    assert.match(script, /redis-cli --cluster create/);
    for (const n of CLUSTER_NODES) assert.match(script, new RegExp(`\\b${n}\\b`), `the cluster is created with ${n}`);
    assert.match(script, /cluster_state:ok/, 'it waits for the cluster to be ok, and does nothing when it already is');
    assert.notEqual(init.restart, 'unless-stopped', 'a one-shot service is not restarted');
    for (const n of REPLICAS) {
      const env = envOf(s[n]);
      assert.equal(String(env.REDIS_CLUSTER), '1', `${n}: REDIS_CLUSTER`);
      assert.equal(env.REDIS_ADAPTER, 'sharded', `${n}: REDIS_ADAPTER`);
      assert.match(env.REDIS_URL, /^redis:\/\/redis:6379(\/0)?$/, `${n}: REDIS_URL names a seed node, database 0`);
      assert.equal(s[n].depends_on['redis-cluster']?.condition, 'service_completed_successfully', `${n} starts once the cluster exists`);
      assert.equal(env.NODE_ID, n);
    }
    for (const key of ['JWT_SECRET', 'API_KEY', 'REDIS_URL']) {
      assert.equal(new Set(REPLICAS.map((n) => envOf(s[n])[key])).size, 1, `${key} shared by the three replicas`);
    }
    assert.deepEqual(healthyDeps(s.lb), REPLICAS, 'the balancer still waits for the three replicas');
  });
});

// The compose files ship no secret (issue 13): the secrets are required
// variables that .env.example explains, and dev tokens are off unless
// asked for.
const ENV_EXAMPLE = path.join(ROOT, '.env.example');
const parseEnvFile = (text) => Object.fromEntries(text.split('\n').map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

describe('compose secrets', () => {
  const files = [[COMPOSE], [COMPOSE, COMPOSE_CLUSTER]];
  const fArgs = (fs) => fs.flatMap((f) => ['-f', f]);

  it('no secret literal is shipped: a secret-like variable is empty unless given, or names a generated file', () => {
    for (const file of [COMPOSE, COMPOSE_CLUSTER]) {
      const doc = YAML.parse(readFileSync(file, 'utf8'), { merge: true });
      for (const [name, svc] of Object.entries(doc.services || {})) {
        for (const [key, value] of Object.entries(envOf(svc))) {
          if (/SECRET|KEY|PASSWORD|TOKEN/i.test(key) && key !== 'DEV_TOKENS') {
            if (key.endsWith('_FILE')) assert.ok(String(value).startsWith(`${SECRETS_DIR}/`), `${path.basename(file)}: ${name}.${key} = ${value}`);
            else assert.equal(String(value), `\${${key}:-}`, `${path.basename(file)}: ${name}.${key} = ${value}`);
          }
          if (key === 'REDIS_URL') assert.ok(!/\/\/[^/]*@/.test(value), `${path.basename(file)}: ${name}: a password in REDIS_URL`);
        }
      }
      const text = readFileSync(file, 'utf8');
      assert.ok(!/\$\{(JWT_SECRET|API_KEY):?-[^}]/.test(text), `${path.basename(file)} gives a secret a default`);
      assert.ok(!/demo-secret|demo-api-key|change-me/.test(text), `${path.basename(file)} holds a demo secret`);
    }
  });

  it('works out of the box: without JWT_SECRET and API_KEY every replica reads the generated files', () => {
    requireCompose();
    for (const fs of files) {
      const r = compose([...fArgs(fs), 'config'], { env: cleanEnv });
      assert.equal(r.status, 0, `${fs.map((f) => path.basename(f))} without secrets: ${r.stderr}`);
      const doc = YAML.parse(r.stdout);
      for (const n of REPLICAS) {
        const env = envOf(doc.services[n]);
        assert.equal(env.JWT_SECRET ?? '', '', `${n}: no JWT_SECRET given`);
        assert.equal(env.API_KEY ?? '', '', `${n}: no API_KEY given`);
        assert.equal(env.JWT_SECRET_FILE, `${SECRETS_DIR}/jwt_secret`);
        assert.equal(env.API_KEY_FILE, `${SECRETS_DIR}/api_key`);
      }
    }
  });

  it('the secrets service writes two different random secrets once, readable by the replicas\' user only, and the binary takes them', async () => {
    const cmd = [].concat(raw().services.secrets.command).join('\n');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-secrets-'));
    try {
      // The same script, on a directory of ours ($$ is Compose's escape).
      const root = process.getuid && process.getuid() === 0;
      let script = cmd.replaceAll('$$', '$').replaceAll('/secrets', dir);
      if (!root) script = script.replace(/^\s*chown .*$/m, ':');
      const run = () => spawnSync('sh', ['-ec', script], { encoding: 'utf8' });
      let r = run();
      assert.equal(r.status, 0, r.stderr);
      const jwt = readFileSync(path.join(dir, 'jwt_secret'), 'utf8');
      const key = readFileSync(path.join(dir, 'api_key'), 'utf8');
      assert.match(jwt, /^[A-Za-z0-9+/]{43}=\n$/, '32 random bytes, base64');
      assert.match(key, /^[A-Za-z0-9+/]{43}=\n$/);
      assert.notEqual(jwt, key);
      for (const f of ['jwt_secret', 'api_key']) {
        const st = statSync(path.join(dir, f));
        assert.equal(st.mode & 0o777, 0o400, `${f} is 0400`);
        if (root) assert.equal(st.uid, 65532, `${f} belongs to the image's user`);
      }
      r = run();
      assert.equal(r.status, 0, r.stderr);
      assert.equal(readFileSync(path.join(dir, 'jwt_secret'), 'utf8'), jwt, 'a second run keeps the secret');

      // The binary reads them: a token signed with the file's secret is
      // good, and the events API wants the file's key.
      const sb = await startSwitchboard({ env: { JWT_SECRET_FILE: path.join(dir, 'jwt_secret'), API_KEY_FILE: path.join(dir, 'api_key') } });
      try {
        const post = (k) => fetch(`${sb.url}/api/events`, {
          method: 'POST', headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
          body: JSON.stringify({ users: ['u'], event: 'e', args: {} }),
        });
        assert.equal((await post(key.trim())).status, 202);
        assert.equal((await post('wrong')).status, 401);
        assert.equal((await fetch(`${sb.url}/api/dev/token`, { method: 'POST', body: '{"user":"u"}' })).status, 404, 'not development mode');
      } finally {
        await sb.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('.env.example: empty secrets (then generated), dev tokens on, and filled in it configures every replica', () => {
    requireCompose();
    const example = readFileSync(ENV_EXAMPLE, 'utf8');
    const vars = parseEnvFile(example);
    assert.deepEqual(vars, { JWT_SECRET: '', API_KEY: '', DEV_TOKENS: '1' });
    assert.match(example, /openssl rand/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-env-example-'));
    try {
      const asIs = path.join(dir, 'as-is.env');
      writeFileSync(asIs, example);
      const r = spawnSync('docker-compose', ['--env-file', asIs, '-f', COMPOSE, 'config', '-q'], { cwd: ROOT, env: cleanEnv, encoding: 'utf8' });
      assert.equal(r.status, 0, `.env.example copied unfilled: ${r.stderr}`);
      const filled = path.join(dir, 'filled.env');
      writeFileSync(filled, example.replace(/^JWT_SECRET=$/m, 'JWT_SECRET=filled-jwt-secret-0123456789abcdefghij')
        .replace(/^API_KEY=$/m, 'API_KEY=filled-api-key').replace(/^DEV_TOKENS=1$/m, 'DEV_TOKENS=0'));
      for (const fs of files) {
        const ok = spawnSync('docker-compose', ['--env-file', filled, ...fArgs(fs), 'config'], { cwd: ROOT, env: cleanEnv, encoding: 'utf8' });
        assert.equal(ok.status, 0, ok.stderr);
        const doc = YAML.parse(ok.stdout);
        for (const n of REPLICAS) {
          const env = envOf(doc.services[n]);
          assert.equal(env.JWT_SECRET, 'filled-jwt-secret-0123456789abcdefghij');
          assert.equal(env.API_KEY, 'filled-api-key');
          assert.equal(String(env.DEV_TOKENS), '0');
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('.env stays out of git and of the image build context', () => {
    assert.ok(ignorer()('.env'), '.dockerignore keeps .env out of the build context');
    const r = spawnSync('git', ['check-ignore', '-q', '.env'], { cwd: ROOT });
    assert.equal(r.status, 0, '.gitignore ignores .env');
  });
});

describe('Dockerfile', () => {
  const st = stages();
  const final = st.at(-1);

  it('is multi-stage: a Go build stage on the go.mod toolchain, then a small final image', () => {
    assert.ok(st.length >= 2, 'at least two stages');
    const goVersion = /^go (\d+\.\d+)/m.exec(readFileSync(path.join(ROOT, 'go.mod'), 'utf8'))[1];
    assert.match(st[0].from, new RegExp(`^golang:${goVersion.replace('.', '\\.')}\\S* AS build$`, 'i'));
    assert.match(final.from, /^(gcr\.io\/distroless\/static|scratch|alpine)/, 'final image is minimal');
    const copy = final.steps.find((s) => s.op === 'COPY' && s.arg.startsWith('--from=build '));
    assert.ok(copy, 'final stage copies the binary');
    const [src, dest] = copy.arg.split(/\s+/).slice(1);
    assert.equal(src, '/out/switchboard', 'what the build stage wrote');
    const entry = JSON.parse(final.steps.find((s) => s.op === 'ENTRYPOINT').arg);
    assert.deepEqual(entry, [dest], 'the entrypoint is the copied binary');
  });

  it('runs as a non-root user and has a HEALTHCHECK that is the binary itself', () => {
    const users = final.steps.filter((s) => s.op === 'USER');
    assert.equal(users.length, 1);
    const [u] = users[0].arg.split(':');
    assert.ok(u !== 'root' && u !== '0', `USER ${users[0].arg}`);
    const hc = final.steps.find((s) => s.op === 'HEALTHCHECK');
    assert.ok(hc, 'HEALTHCHECK present');
    const entry = JSON.parse(final.steps.find((s) => s.op === 'ENTRYPOINT').arg);
    const cmd = JSON.parse(/CMD\s+(\[.*\])$/.exec(hc.arg)[1]);
    assert.deepEqual(cmd, [entry[0], '-healthcheck']);
  });

  describe('its build command on the build context .dockerignore leaves', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sb-docker-ctx-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const bin = path.join(dir, 'out', 'switchboard');

    it('has everything the build needs: the static build resolves and the binary builds', () => {
      const ignored = ignorer();
      const ls = spawnSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
      assert.equal(ls.status, 0, ls.stderr);
      const files = ls.stdout.split('\n').filter((f) => f && existsSync(path.join(ROOT, f)) && !ignored(f));
      assert.ok(files.includes('go.mod') && files.includes('go.sum'));
      assert.ok(!files.some((f) => f.startsWith('web/node_modules/') || f.startsWith('.git/')));
      const ctx = path.join(dir, 'ctx');
      for (const f of files) {
        mkdirSync(path.dirname(path.join(ctx, f)), { recursive: true });
        cpSync(path.join(ROOT, f), path.join(ctx, f));
      }
      const run = st[0].steps.filter((s) => s.op === 'RUN').map((s) => s.arg).find((a) => / go build /.test(` ${a}`));
      assert.ok(run, 'build stage has a go build step');
      const m = /^CGO_ENABLED=0 go build (.*)-o \/out\/switchboard \.\/cmd\/switchboard$/.exec(run);
      assert.ok(m, `unexpected build step: ${run}`);
      const env = { ...process.env, GOFLAGS: '-mod=readonly' };
      // The image's static build must resolve every package with cgo off...
      const list = spawnSync('go', ['list', '-deps', './cmd/switchboard'], { cwd: ctx, env: { ...env, CGO_ENABLED: '0' }, encoding: 'utf8' });
      assert.equal(list.status, 0, list.stderr);
      // ...and the context must build. With the flags CI already builds with:
      // the image's CGO_ENABLED=0 -trimpath would recompile the standard
      // library and every module from cold (over three minutes here), for no
      // more information about the context.
      const r = spawnSync('go', ['build', '-tags', 'nomsgpack', '-o', bin, './cmd/switchboard'], { cwd: ctx, env, encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    });

    it('HEALTHCHECK command: exit 0 while the process serves, 1 once it is gone', async () => {
      assert.ok(existsSync(bin), 'built by the previous test');
      const port = await freePort();
      const env = { ADDR: `127.0.0.1:${port}` };
      const check = async () => exited(spawn(bin, ['-healthcheck'], { env: { ...cleanEnv, ...env }, stdio: 'ignore' }));
      // The server is the binary built from the context too (loopback only:
      // in the image ADDR is ":7999" and the check dials 127.0.0.1).
      const sb = spawn(bin, [], { env: { ...cleanEnv, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      sb.stderr.on('data', (d) => { stderr += d; });
      try {
        await waitHealthy(`http://127.0.0.1:${port}/healthz`, sb, () => stderr);
        assert.equal(await check(), 0);
      } finally {
        if (sb.exitCode === null) sb.kill('SIGTERM');
        await exited(sb);
      }
      assert.equal(await check(), 1);
    });
  });
});
