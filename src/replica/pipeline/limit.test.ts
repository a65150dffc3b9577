import { describe, expect, it } from 'vitest';
import { Limiter, mapLimit } from './limit.js';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('Limiter and mapLimit', () => {
  it('never runs more than the limit at once, and keeps results in input order', async () => {
    let active = 0;
    let most = 0;
    const items = Array.from({ length: 20 }, (_, i) => i);
    const out = await mapLimit(items, 3, async (i) => {
      active++;
      most = Math.max(most, active);
      await new Promise((r) => setTimeout(r, (20 - i) % 4));
      active--;
      return i * 2;
    });
    expect(out).toEqual(items.map((i) => i * 2));
    expect(most).toBe(3);

    const limiter = new Limiter(2);
    let inside = 0;
    let peak = 0;
    await Promise.all(
      items.map(() =>
        limiter.run(async () => {
          inside++;
          peak = Math.max(peak, inside);
          await tick();
          inside--;
        }),
      ),
    );
    expect(peak).toBe(2);
    expect(limiter.active).toBe(0);
  });

  it('mapLimit rejects with the first error and starts nothing after it', async () => {
    const started: number[] = [];
    await expect(
      mapLimit([0, 1, 2, 3, 4, 5], 2, async (i) => {
        started.push(i);
        await tick();
        if (i === 1) throw new Error('item 1 failed');
        return i;
      }),
    ).rejects.toThrow('item 1 failed');
    expect(started.length).toBeLessThanOrEqual(3);
  });
});
