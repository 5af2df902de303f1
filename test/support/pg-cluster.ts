import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A throwaway PostgreSQL cluster for fault tests that stop, restart or kill
 * the database: its own data folder in a temporary directory, its own port on
 * 127.0.0.1, and nothing shared with the server other tests use.
 *
 * PostgreSQL refuses to run as root, so when the tests run as root every
 * command runs as the `postgres` user through runuser.
 */
export class PgCluster {
  private constructor(
    readonly folder: string,
    readonly port: number,
    private readonly binDir: string,
  ) {}

  /** Creates the cluster with initdb and starts it. */
  static async create(): Promise<PgCluster> {
    const binDir = findBinDir();
    const folder = mkdtempSync(join(tmpdir(), 'vouch-pg-'));
    if (runsAsRoot()) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
      chownSync(folder, uid, gid);
    }
    const cluster = new PgCluster(folder, await freePort(), binDir);
    await cluster.pg('initdb', ['-D', cluster.dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C']);
    await cluster.start();
    return cluster;
  }

  get dataDir(): string {
    return join(this.folder, 'data');
  }

  get logFile(): string {
    return join(this.folder, 'server.log');
  }

  /** A connection URL for `database` (the maintenance database by default). */
  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  /**
   * Starts the server and waits until it accepts connections. After a kill
   * the old backends may still be exiting and hold the shared memory, so a
   * refused start is tried again for a while.
   */
  async start(): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        await this.pg('pg_ctl', [
          '-D',
          this.dataDir,
          '-l',
          this.logFile,
          '-w',
          '-t',
          '30',
          '-o',
          `-p ${this.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${this.folder}`,
          'start',
        ]);
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`the throwaway cluster did not start: ${(error as Error).message}\n${this.logTail()}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  }

  /** A clean shutdown that ends every connection (`fast` mode). */
  async stop(): Promise<void> {
    await this.pg('pg_ctl', ['-D', this.dataDir, '-m', 'fast', '-w', 'stop']);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** SIGKILLs the postmaster, as an out-of-memory kill or a crash would; its backends follow it down. */
  kill9(): number {
    const pid = this.postmasterPid();
    if (pid === null) throw new Error('the throwaway cluster is not running: no postmaster.pid');
    process.kill(pid, 'SIGKILL');
    return pid;
  }

  postmasterPid(): number | null {
    const file = join(this.dataDir, 'postmaster.pid');
    if (!existsSync(file)) return null;
    const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  }

  /** Stops the server however it is, and deletes its folder. */
  async destroy(): Promise<void> {
    await this.pg('pg_ctl', ['-D', this.dataDir, '-m', 'immediate', '-w', 'stop']).catch(() => {});
    rmSync(this.folder, { recursive: true, force: true });
  }

  logTail(lines = 30): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no server log)';
    }
  }

  private async pg(program: string, args: readonly string[]): Promise<void> {
    const binary = join(this.binDir, program);
    const [command, commandArgs] = runsAsRoot() ? ['runuser', ['-u', 'postgres', '--', binary, ...args]] : [binary, [...args]];
    await run(command, commandArgs, { cwd: this.folder, timeout: 60_000 });
  }
}

function runsAsRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The bin folder of the newest PostgreSQL installed as /usr/lib/postgresql/<version>/bin. */
function findBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((version) => existsSync(join(root, version, 'bin', 'pg_ctl')))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries under ${root}/*/bin; install the postgresql package`);
  return join(root, versions[0] as string, 'bin');
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (address && typeof address === 'object' ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Why a throwaway cluster cannot be made here (no server binaries), or null
 * when it can, for skipping the tests that need one. With
 * VOUCH_REQUIRE_POSTGRES=1 a missing installation throws instead, so CI
 * cannot pass by skipping them.
 */
export function pgClusterAvailable(): string | null {
  try {
    findBinDir();
    return null;
  } catch (error) {
    if (process.env.VOUCH_REQUIRE_POSTGRES === '1') {
      throw new Error(`VOUCH_REQUIRE_POSTGRES=1 but no throwaway PostgreSQL cluster can be made: ${(error as Error).message}`);
    }
    return (error as Error).message;
  }
}
