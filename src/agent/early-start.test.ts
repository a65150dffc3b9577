import { describe, expect, it } from 'vitest';
import { closeEarly, startEarly } from './early-start.js';

describe('what the CLI starts before loading a command', () => {
  it('starts a lister for a backup that lists a tree, and closes it when nothing took it', async () => {
    for (const argv of [['backup'], ['backup', 'web'], ['backup', '--path', '/srv', '--to', 'both'], ['backup', '--to=disk']]) {
      const early = startEarly(argv);
      expect(early.lister?.available, argv.join(' ')).toBe(true);
      await closeEarly(early);
      expect(early.lister!.available).toBe(false);
    }
  });

  it('starts nothing for other commands, help, or a backup to the cloud only', async () => {
    for (const argv of [[], ['restore', 'x'], ['check'], ['backup', '--help'], ['backup', '-h'], ['backup', '--to', 'cloud'], ['backup', 'web', '--to=cloud']]) {
      expect(startEarly(argv), argv.join(' ')).toEqual({});
    }
    await closeEarly({});
  });
});
