import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of PostgreSQL that cuts one connection at its COMMIT,
 * so a test can drop the link at exactly the moment whose outcome the store
 * must find out:
 *
 * - `deliver-then-cut`: the COMMIT reaches the server, which commits, and the
 *   reply never comes back;
 * - `cut-before`: the COMMIT never reaches the server, which rolls back when
 *   it sees the connection close.
 *
 * It recognises the COMMIT as the simple-query message the store sends for it;
 * another marker (such as a prepared statement's name, which every execution
 * of it carries) cuts at that statement instead.
 */
export type CutMode = 'deliver-then-cut' | 'cut-before';

const COMMIT_MESSAGE = Buffer.from('COMMIT\0');

export class CommitCutter {
  private mode: CutMode | null = null;
  private marker = COMMIT_MESSAGE;
  private readonly sockets = new Set<Socket>();
  /** How many connections were cut so far. */
  cuts = 0;
  /** Set by goAwayAtCut: the cut also ends every other connection. */
  private goAway = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: { host: string; port: number }): Promise<CommitCutter> {
    let cutter: CommitCutter | undefined;
    const server = createServer((client) => cutter?.handle(client, target));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (!address || typeof address !== 'object') throw new Error('the proxy has no port');
    cutter = new CommitCutter(server, address.port);
    return cutter;
  }

  /** Cuts the next connection that sends a COMMIT (or `marker`), once. */
  arm(mode: CutMode, marker?: string): void {
    this.mode = mode;
    this.marker = marker === undefined ? COMMIT_MESSAGE : Buffer.from(marker);
  }

  /** Stops accepting connections, as a database that went away would; open ones stay. */
  refuseNewConnections(): void {
    // close() stops listening at once; its callback would wait for the open connections to end.
    if (this.server.listening) this.server.close();
  }

  /**
   * Makes the next cut take the whole database away, as a crashed server
   * would: new connections are refused from now on, and the connections the
   * pool keeps open beside the cut one end with it.
   */
  goAwayAtCut(): void {
    this.refuseNewConnections();
    this.goAway = true;
  }

  async close(): Promise<void> {
    this.refuseNewConnections();
    for (const socket of this.sockets) socket.destroy();
  }

  private handle(client: Socket, target: { host: string; port: number }): void {
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
    }
    upstream.on('data', (chunk) => client.write(chunk));
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.end());
    client.on('data', (chunk: Buffer) => {
      const mode = this.mode;
      if (mode && chunk.includes(this.marker)) {
        this.mode = null;
        this.cuts += 1;
        upstream.removeAllListeners('data');
        if (mode === 'deliver-then-cut') upstream.end(chunk);
        else upstream.destroy();
        client.destroy();
        if (this.goAway) for (const socket of this.sockets) if (socket !== upstream) socket.destroy();
        return;
      }
      upstream.write(chunk);
    });
  }
}
