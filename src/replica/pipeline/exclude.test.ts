import { describe, expect, it } from 'vitest';
import { excluder } from './exclude.js';

describe('excluder', () => {
  it('is null without patterns (nothing to load, nothing to test per path)', () => {
    expect(excluder([])).toBeNull();
  });

  it('matches a pattern without "/" at any depth, and one with "/" from the root; dot files too', () => {
    const ex = excluder(['*.tmp', 'cache/**', '.git'])!;
    expect(ex('a.tmp')).toBe(true);
    expect(ex('deep/er/b.tmp')).toBe(true);
    expect(ex('cache/x/y')).toBe(true);
    expect(ex('src/cache/x')).toBe(false);
    expect(ex('.git')).toBe(true);
    expect(ex('sub/.git')).toBe(true);
    expect(ex('a.tmp.keep')).toBe(false);
    expect(ex('notes.txt')).toBe(false);
  });
});
