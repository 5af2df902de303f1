// A subpath of its own, so that processes which do not export metrics never load prom-client.
export { registerMetrics } from './audit/metrics.js';
