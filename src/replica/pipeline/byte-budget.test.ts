import { describe, expect, it } from 'vitest';
import { ByteBudget, createBudget } from './byte-budget.js';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('byte budget', () => {
  it('admits while there is room, then makes the producer hand over and wait until the consumer releases (backpressure)', async () => {
    const shared = createBudget(100);
    const producer = new ByteBudget(shared);
    const consumer = new ByteBudget(structuredClone(shared));
    await producer.acquire(60, () => {});
    await producer.acquire(40, () => {});
    expect(consumer.inUse).toBe(100);
    let handovers = 0;
    let admitted = false;
    const third = producer
      .acquire(10, () => {
        handovers++;
      })
      .then(() => {
        admitted = true;
      });
    await tick();
    await tick();
    expect(handovers).toBe(1);
    expect(admitted).toBe(false);
    consumer.release(60);
    await third;
    expect(consumer.inUse).toBe(50);
  });

  it('an empty budget admits anything, however big', async () => {
    const b = new ByteBudget(createBudget(10));
    await b.acquire(1000, () => {});
    expect(b.inUse).toBe(1000);
    b.release(1000);
    expect(b.inUse).toBe(0);
  });

  it('abort wakes a waiting producer with an AbortError, and fails later acquires', async () => {
    const shared = createBudget(10);
    const producer = new ByteBudget(shared);
    await producer.acquire(10, () => {});
    const waiting = producer.acquire(1, () => {});
    new ByteBudget(shared).abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    await expect(producer.acquire(1, () => {})).rejects.toMatchObject({ name: 'AbortError' });
  });
});
