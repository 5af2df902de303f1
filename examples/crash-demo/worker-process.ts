/**
 * The parts the vouch and naive worker processes share: their arguments from
 * the supervisor, their log file, their SMTP client, and the ready message
 * and stop handling they use with the supervisor.
 */
import { parseArgs } from 'node:util';
import nodemailer, { type Transporter } from 'nodemailer';
import { type Logger, pino } from 'pino';
import { DEMO_SETTINGS } from './settings.js';
import { countAtSink } from './smtp-sink.js';

export interface WorkerProcessArgs {
  /** Location of the jobs: a SQLite file path, or a postgres:// URL for the vouch worker. */
  store: string;
  smtpPort: number;
  lookupUrl: string;
  logFile: string;
  workerId: string;
}

/** Message a worker process sends over IPC once it is taking jobs. */
export interface ReadyMessage {
  type: 'ready';
  /** CPU time the process used to get here (all threads, user and system), in milliseconds. */
  cpuMs: number;
}

export function toWorkerArgv(args: WorkerProcessArgs): string[] {
  return [
    '--store',
    args.store,
    '--smtp-port',
    String(args.smtpPort),
    '--lookup-url',
    args.lookupUrl,
    '--log-file',
    args.logFile,
    '--worker-id',
    args.workerId,
  ];
}

export function readWorkerArgv(argv: string[] = process.argv.slice(2)): WorkerProcessArgs {
  const { values } = parseArgs({
    args: argv,
    options: {
      store: { type: 'string' },
      'smtp-port': { type: 'string' },
      'lookup-url': { type: 'string' },
      'log-file': { type: 'string' },
      'worker-id': { type: 'string' },
    },
    strict: true,
  });
  const missing = ['store', 'smtp-port', 'lookup-url', 'log-file', 'worker-id'].filter((name) => !values[name as keyof typeof values]);
  if (missing.length > 0) throw new Error(`worker process started without ${missing.map((name) => `--${name}`).join(', ')}`);
  return {
    store: values.store as string,
    smtpPort: Number(values['smtp-port']),
    lookupUrl: values['lookup-url'] as string,
    logFile: values['log-file'] as string,
    workerId: values['worker-id'] as string,
  };
}

/**
 * Creates a pino logger at warn level that appends to the run's log file.
 * Writes are synchronous so that the last lines before a SIGKILL are on disk.
 */
export function createFileLogger(args: WorkerProcessArgs): Logger {
  return pino(
    { level: 'warn', base: { pid: process.pid, workerId: args.workerId } },
    pino.destination({ dest: args.logFile, append: true, sync: true }),
  );
}

/** Creates the process's one pooled SMTP transport, reused by every job it runs. */
export function createTransport(smtpPort: number): Transporter {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port: smtpPort,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections: DEMO_SETTINGS.concurrency,
    maxMessages: Number.POSITIVE_INFINITY,
  });
}

/**
 * Exercises the SMTP client and the sink lookup once before the worker takes
 * jobs, the way a service checks its connections before it reports ready.
 * Without it the first jobs of every fresh process pay for the first
 * connections and for compiling the send path, and in this demo fresh
 * processes are the norm.
 */
export async function warmUp(transport: Transporter, lookupUrl: string): Promise<void> {
  await Promise.all([transport.verify(), countAtSink(lookupUrl, 'warm-up@crash-demo.vouch')]);
}

export function reportReady(): void {
  const usage = process.cpuUsage();
  const message: ReadyMessage = { type: 'ready', cpuMs: (usage.user + usage.system) / 1000 };
  process.send?.(message);
}

/**
 * Runs `stop` once on SIGTERM, SIGINT or when the supervisor goes away (its
 * IPC channel closes), then exits. A second signal exits at once.
 */
export function stopOnRequest(logger: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const handle = (reason: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    stop()
      .then(() => process.exit(0))
      .catch((error: unknown) => {
        logger.error({ err: error, reason }, 'worker process could not stop cleanly');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => handle('SIGTERM'));
  process.on('SIGINT', () => handle('SIGINT'));
  process.on('disconnect', () => handle('supervisor went away'));
}

/** Logs a start-up failure where the supervisor will point the user, then exits non-zero. */
export function failStartup(logger: Logger, error: unknown): never {
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  logger.fatal({ err: error }, 'worker process failed to start');
  process.stderr.write(`worker process failed to start: ${text}\n`);
  process.exit(3);
}
