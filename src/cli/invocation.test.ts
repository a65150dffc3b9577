import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Invocation, type SignalSource } from './invocation.js';

class FakeProcess extends EventEmitter implements SignalSource {
  exits: number[] = [];
  exit(code: number): void {
    this.exits.push(code);
  }
}

describe('a job run in the CLI process (Invocation.interruptible)', () => {
  it('is aborted by the first SIGINT or SIGTERM with STRATA_INTERRUPTED and what to do next; a second signal ends the process; dispose removes the handlers', () => {
    const err: string[] = [];
    const inv = new Invocation({ out: () => {}, err: (s) => err.push(s), tty: false });
    const proc = new FakeProcess();
    const job = inv.interruptible('restore', 'run it again with --on-conflict skip', proc);
    expect(job.signal.aborted).toBe(false);

    proc.emit('SIGINT', 'SIGINT');
    expect(job.signal.aborted).toBe(true);
    expect(job.signal.reason).toMatchObject({ code: 'STRATA_INTERRUPTED', kind: 'failed' });
    expect((job.signal.reason as Error).message).toBe('the restore was interrupted (SIGINT) and stopped cleanly; run it again with --on-conflict skip');
    expect(err).toEqual(['strata: SIGINT: stopping the restore cleanly (send it again to stop at once)']);
    expect(proc.exits).toEqual([]);

    proc.emit('SIGTERM', 'SIGTERM');
    expect(proc.exits).toEqual([143]);

    job.dispose();
    expect(proc.listenerCount('SIGINT') + proc.listenerCount('SIGTERM')).toBe(0);
  });
});
