import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The outside world for fault tests: an HTTP service on 127.0.0.1 that
 * counts every effect request per idempotency key, the way a mail or payment
 * provider's log would.
 *
 * - `POST /effects/:key` with a JSON body counts one request for the key. The
 *   first request for a key is applied and gets a receipt; a repeat is counted
 *   as a duplicate and answered with the first receipt, as a provider that
 *   deduplicates by key would.
 * - `GET /effects/:key` looks an effect up, for an effect's verify: 200 with
 *   the receipt when it was applied, 404 when it was not.
 *
 * A request is counted only once its whole body arrived, so a process killed
 * mid-request leaves no half-counted effect.
 */
export interface EffectSink {
  /** Base URL, such as http://127.0.0.1:41234. */
  readonly url: string;
  /** POST requests received for `key` (1 for an effect that happened exactly once). */
  count(key: string): number;
  /** Every key with its request count. */
  counts(): Map<string, number>;
  /** Keys that received more than one request. */
  duplicates(): string[];
  /** Total POST requests received. */
  total(): number;
  /** The receipt of an applied effect, or undefined. */
  receipt(key: string): Receipt | undefined;
  close(): Promise<void>;
}

export interface Receipt {
  receiptId: string;
  key: string;
  body: unknown;
  appliedAt: number;
}

export async function startEffectSink(): Promise<EffectSink> {
  const requests = new Map<string, number>();
  const applied = new Map<string, Receipt>();

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => send(response, 500, { error: String(error) }));
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const match = /^\/effects\/([^/?]+)$/.exec(request.url ?? '');
    if (!match) return send(response, 404, { error: 'unknown path' });
    const key = decodeURIComponent(match[1]!);
    if (request.method === 'GET') {
      const receipt = applied.get(key);
      return receipt ? send(response, 200, receipt) : send(response, 404, { found: false });
    }
    if (request.method !== 'POST') return send(response, 405, { error: 'use GET or POST' });

    const body = await readBody(request);
    requests.set(key, (requests.get(key) ?? 0) + 1);
    let receipt = applied.get(key);
    if (!receipt) {
      receipt = { receiptId: randomUUID(), key, body: body ? JSON.parse(body) : null, appliedAt: Date.now() };
      applied.set(key, receipt);
    }
    send(response, 200, receipt);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    count: (key) => requests.get(key) ?? 0,
    counts: () => new Map(requests),
    duplicates: () => [...requests].filter(([, count]) => count > 1).map(([key]) => key),
    total: () => [...requests.values()].reduce((sum, count) => sum + count, 0),
    receipt: (key) => applied.get(key),
    close: () =>
      new Promise((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
    request.on('close', () => {
      if (!request.complete) reject(new Error('the client went away before the whole request arrived'));
    });
  });
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
}

/** Client side of the sink, used by job handlers in the worker processes. */
export const sinkClient = {
  async post(sinkUrl: string, key: string, body: unknown): Promise<Receipt> {
    const response = await fetch(`${sinkUrl}/effects/${encodeURIComponent(key)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`effect sink responded ${response.status} to POST ${key}`);
    return (await response.json()) as Receipt;
  },

  async lookup(sinkUrl: string, key: string): Promise<{ found: true; result: Receipt } | { found: false }> {
    const response = await fetch(`${sinkUrl}/effects/${encodeURIComponent(key)}`);
    if (response.status === 404) return { found: false };
    if (!response.ok) throw new Error(`effect sink responded ${response.status} to GET ${key}`);
    return { found: true, result: (await response.json()) as Receipt };
  },
};
