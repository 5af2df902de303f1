import { describe, expect, it } from 'vitest';
import { errorForLog } from '../../src/core/log-error.js';

describe('errorForLog', () => {
  it('drops enumerable driver state', () => {
    const error = Object.assign(new Error('terminating connection'), {
      code: '57P01',
      client: { connectionParameters: { password: 'hunter2' }, parsedStatements: { a: 'SELECT 1' } },
    });
    const logged = errorForLog(error);
    expect(logged.message).toBe('terminating connection');
    expect(logged.code).toBe('57P01');
    expect(JSON.stringify(logged)).not.toContain('hunter2');
    expect(JSON.stringify(logged)).not.toContain('parsedStatements');
  });

  it('keeps the cause chain', () => {
    const error = new Error('commit failed', { cause: new TypeError('socket closed') });
    expect(errorForLog(error).cause).toMatchObject({ type: 'TypeError', message: 'socket closed' });
  });

  it('describes thrown non-errors', () => {
    expect(errorForLog('plain string')).toEqual({ type: 'string', message: 'plain string' });
    expect(errorForLog(null)).toEqual({ type: 'object', message: 'null' });
  });
});
