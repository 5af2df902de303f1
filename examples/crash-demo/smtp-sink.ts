/**
 * A local SMTP server that keeps every message it accepts, so a test or a
 * demo can ask the receiving side, not the sender, what was delivered.
 *
 * Senders in other processes look a Message-ID up through a small HTTP
 * endpoint on the same host:
 *
 *   GET /messages/<Message-ID, URL-encoded>  ->  200 {"messageId", "count"} | 404 {"messageId", "count": 0}
 *
 * A message counts as accepted once its whole DATA section arrived, which is
 * the moment the server answers 250. A sender killed in the middle of DATA
 * leaves nothing behind; a sender killed after the final dot but before it
 * read the 250 leaves a message it does not know about, which is exactly the
 * in-doubt case an effect's verify has to settle.
 */
import { Agent, createServer, get as httpGet, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Server } from 'node:net';
import type { SMTPServerDataStream } from 'smtp-server';

export interface SinkMessage {
  /** The Message-ID header without its angle brackets, or null when the message had none. */
  messageId: string | null;
  /** Every header of the message, names in lower case; a repeated header keeps its first value. */
  headers: ReadonlyMap<string, string>;
  from: string | null;
  to: string[];
  bytes: number;
  receivedAt: number;
}

export interface SmtpSink {
  readonly host: string;
  readonly smtpPort: number;
  /** Base URL of the lookup endpoint, such as http://127.0.0.1:40123. */
  readonly lookupUrl: string;
  /** How many accepted messages carry this Message-ID (with or without angle brackets). */
  count(messageId: string): number;
  /** Every accepted message, oldest first. */
  messages(): readonly SinkMessage[];
  /** Stops both servers and drops open connections. */
  close(): Promise<void>;
}

export interface SmtpSinkOptions {
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** @defaultValue 0, an ephemeral port */
  smtpPort?: number;
  /** @defaultValue 0, an ephemeral port */
  httpPort?: number;
}

/** Headers larger than this are not parsed further; the message is still accepted. */
const HEADER_LIMIT_BYTES = 64 * 1024;

/** Starts the SMTP server and its HTTP lookup endpoint; resolves once both listen. */
export async function startSmtpSink(options: SmtpSinkOptions = {}): Promise<SmtpSink> {
  const host = options.host ?? '127.0.0.1';
  const accepted: SinkMessage[] = [];
  const counts = new Map<string, number>();

  // Loaded here, not at the top, so that worker processes importing countAtSink do not pay for the server.
  const { SMTPServer } = await import('smtp-server');
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      readMessage(stream)
        .then(({ headers, bytes }) => {
          const messageId = normalizeMessageId(headers.get('message-id') ?? '') || null;
          accepted.push({
            messageId,
            headers,
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
            to: session.envelope.rcptTo.map((recipient) => recipient.address),
            bytes,
            receivedAt: Date.now(),
          });
          if (messageId !== null) counts.set(messageId, (counts.get(messageId) ?? 0) + 1);
          callback(null, `accepted ${messageId ?? 'message without Message-ID'}`);
        })
        // The sender went away during DATA: nothing was accepted and nobody waits for the reply.
        .catch((error: Error) => callback(error));
    },
  });
  // Connections reset by killed senders surface here; they are expected and not the sink's failure.
  smtp.on('error', () => {});

  const http = createServer((request, response) => answerLookup(request, response, counts));
  http.keepAliveTimeout = 30_000;

  const smtpPort = await listen(smtp.server, () => smtp.listen(options.smtpPort ?? 0, host));
  const httpPort = await listen(http, () => http.listen(options.httpPort ?? 0, host));

  return {
    host,
    smtpPort,
    lookupUrl: `http://${host}:${httpPort}`,
    count: (messageId) => counts.get(normalizeMessageId(messageId)) ?? 0,
    messages: () => accepted,
    close: async () => {
      http.closeAllConnections();
      await Promise.all([
        new Promise<void>((resolve) => smtp.close(() => resolve())),
        new Promise<void>((resolve) => http.close(() => resolve())),
      ]);
    },
  };
}

/** Keeps lookup connections open between calls; one lookup per job would otherwise open a connection each time. */
const lookupAgent = new Agent({ keepAlive: true });

/**
 * Asks a sink's lookup endpoint how many messages carry `messageId`. Throws
 * when the sink cannot be reached, so a caller never mistakes "unknown" for "absent".
 *
 * It uses node:http rather than fetch: the first fetch in a process loads
 * undici, which costs about 100 ms of CPU, and the demo starts a fresh worker
 * process after every kill.
 */
export function countAtSink(lookupUrl: string, messageId: string, options: { timeoutMs?: number } = {}): Promise<number> {
  const url = `${lookupUrl}/messages/${encodeURIComponent(normalizeMessageId(messageId))}`;
  return new Promise((resolve, reject) => {
    const request = httpGet(url, { agent: lookupAgent, timeout: options.timeoutMs ?? 5000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        if (response.statusCode === 404) return resolve(0);
        if (response.statusCode !== 200) return reject(new Error(`the SMTP sink responded ${response.statusCode} to GET ${url}`));
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { count?: unknown };
          if (typeof body.count !== 'number') throw new Error('the response has no count');
          resolve(body.count);
        } catch (error) {
          reject(new Error(`the SMTP sink responded to GET ${url} without a valid count: ${(error as Error).message}`));
        }
      });
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${url} to the SMTP sink timed out after ${options.timeoutMs ?? 5000} ms`)));
    request.on('error', reject);
  });
}

/** Strips surrounding whitespace and angle brackets: `<a@b>` and `a@b` name the same message. */
export function normalizeMessageId(messageId: string): string {
  return messageId.trim().replace(/^<(.*)>$/, '$1');
}

function answerLookup(request: IncomingMessage, response: ServerResponse, counts: ReadonlyMap<string, number>): void {
  const path = new URL(request.url ?? '/', 'http://sink').pathname;
  const match = /^\/messages\/(.+)$/.exec(path);
  if (request.method !== 'GET' || !match?.[1]) {
    reply(response, 404, { error: 'not found; use GET /messages/<Message-ID>' });
    return;
  }
  let messageId: string;
  try {
    messageId = normalizeMessageId(decodeURIComponent(match[1]));
  } catch {
    reply(response, 400, { error: 'the Message-ID in the path is not valid URL encoding' });
    return;
  }
  const count = counts.get(messageId) ?? 0;
  reply(response, count > 0 ? 200 : 404, { messageId, count });
}

function reply(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/** Reads a message to its end and parses its header block. Rejects if the stream breaks off. */
function readMessage(stream: SMTPServerDataStream): Promise<{ headers: Map<string, string>; bytes: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let headerBytes = 0;
    let headerDone = false;
    let bytes = 0;
    stream.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      if (headerDone) return;
      chunks.push(chunk);
      headerBytes += chunk.length;
      if (headerBytes >= HEADER_LIMIT_BYTES || chunk.includes('\r\n\r\n') || chunk.includes('\n\n')) headerDone = true;
    });
    stream.once('end', () => resolve({ headers: parseHeaders(Buffer.concat(chunks).toString('utf8')), bytes }));
    stream.once('error', reject);
    stream.once('close', () => {
      if (!stream.readableEnded) reject(new Error('the sender closed the connection before the message was complete'));
    });
  });
}

function parseHeaders(text: string): Map<string, string> {
  const headers = new Map<string, string>();
  const block = text.split(/\r?\n\r?\n/, 1)[0] ?? '';
  // Unfold continuation lines (RFC 5322 2.2.3) before splitting into fields.
  for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!headers.has(name)) headers.set(name, line.slice(colon + 1).trim());
  }
  return headers;
}

/** Calls `start` and resolves with the port the server then listens on. */
function listen(server: Server, start: () => unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.once('listening', () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
    start();
  });
}
