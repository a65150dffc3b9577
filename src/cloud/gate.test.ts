import { describe, expect, it } from 'vitest';
import { StrataError } from '../errors.js';
import type { SubscriptionState } from '../config/types.js';
import { GateRefusedError, OPERATIONS, decide, enforce, evaluateAll, type Connectivity, type Operation } from './gate.js';

// DESIGN.md "Gating", copied as it is written there.
const DESIGN_TABLE = `
| connectivity | subscription | backup to Azure | backup to disk | restore from Azure | restore from disk |
|---|---|---|---|---|---|
| connected | active | allowed | allowed | allowed | allowed |
| connected | expired | stopped | stopped | allowed | allowed |
| connected | deprovisioned | stopped | stopped | stopped, Azure recovery points deleted | stopped |
| lost > 15 days | active | stopped | stopped | allowed | allowed |
| lost > 15 days | expired | stopped | stopped | allowed | allowed |
| lost > 15 days | deprovisioned | stopped | stopped | stopped, Azure recovery points deleted | stopped |
`;

const COLUMNS: Operation[] = ['backup-cloud', 'backup-disk', 'restore-cloud', 'restore-disk'];

interface Cell {
  connectivity: Connectivity;
  subscription: SubscriptionState;
  op: Operation;
  allowed: boolean;
  deleted: boolean;
}

function parseTable(md: string): Cell[] {
  const rows = md
    .trim()
    .split('\n')
    .slice(2)
    .map((line) => line.split('|').slice(1, -1).map((c) => c.trim()));
  return rows.flatMap(([conn, sub, ...cells]) =>
    cells.map((text, i) => ({
      connectivity: conn === 'connected' ? 'connected' : 'lost',
      subscription: sub as SubscriptionState,
      op: COLUMNS[i]!,
      allowed: text === 'allowed',
      deleted: text.includes('recovery points deleted'),
    })),
  );
}

const CELLS = parseTable(DESIGN_TABLE);
const SINCE = Date.parse('2026-11-02T10:00:00Z');
const CONTACT = Date.parse('2026-10-01T08:00:00Z');

describe('gate.decide follows DESIGN.md', () => {
  it('covers all 24 cells', () => expect(CELLS).toHaveLength(24));

  it.each(CELLS)('$connectivity / $subscription / $op → allowed=$allowed', (cell) => {
    const d = decide({ connectivity: cell.connectivity, subscription: cell.subscription, lastContact: CONTACT, subscriptionSince: SINCE }, cell.op);
    expect(d.allowed).toBe(cell.allowed);
    expect(d.operation).toBe(cell.op);
    // The table marks the deletion in the restore-from-Azure column; the flag is true for the whole row.
    if (cell.deleted) expect(d.cloudPointsDeleted).toBe(true);
    expect(d.cloudPointsDeleted).toBe(cell.subscription === 'deprovisioned');
    expect(d.message).not.toContain('\n');
    if (cell.allowed) {
      expect(d.lifts).toBe('');
      expect(d.message).toMatch(/ allowed/);
    } else {
      expect(d.lifts).not.toBe('');
      expect(d.message).toMatch(/ stopped: /);
      expect(d.message).toContain(d.lifts);
      if (cell.subscription !== 'active') expect(d.message).toContain(`subscription ${cell.subscription} (since 2026-11-02)`);
      if (cell.connectivity === 'lost') expect(d.message).toContain('last contact 2026-10-01');
    }
  });
});

describe('gate messages', () => {
  it('names the rule, what remains allowed and what lifts it', () => {
    const d = decide({ connectivity: 'connected', subscription: 'expired', subscriptionSince: SINCE }, 'backup-disk');
    expect(d.rule).toBe('subscription-expired');
    expect(d.message).toBe(
      'backup to disk stopped: subscription expired (since 2026-11-02); restores from disk and cloud remain allowed; backups resume when the subscription is active',
    );
  });

  it('says nothing remains allowed when deprovisioned, and that cloud points are deleted', () => {
    const d = decide({ connectivity: 'connected', subscription: 'deprovisioned' }, 'restore-disk');
    expect(d.message).toBe(
      'restore from disk stopped: subscription deprovisioned; Azure recovery points are deleted; no backup or restore remains allowed; ' +
        'backups and restores resume when the server is registered with a vault whose subscription is active',
    );
  });

  it('explains lost connectivity, with or without a recorded contact', () => {
    const never = decide({ connectivity: 'lost', subscription: 'active', lastContact: null }, 'backup-cloud');
    expect(never.rule).toBe('connectivity-lost');
    expect(never.message).toContain('no successful contact recorded');
    expect(never.message).toContain('restores from disk and cloud remain allowed');
    const both = decide({ connectivity: 'lost', subscription: 'expired', lastContact: CONTACT }, 'backup-disk');
    expect(both.rule).toBe('connectivity-lost-subscription-expired');
    expect(both.lifts).toMatch(/Azure is reached again .* and the subscription is active$/);
  });

  it('notes the restriction on an allowed operation', () => {
    expect(decide({ connectivity: 'connected', subscription: 'active' }, 'restore-cloud').message).toBe('restore from cloud allowed');
    expect(decide({ connectivity: 'connected', subscription: 'expired' }, 'restore-cloud').message).toBe(
      'restore from cloud allowed; backups are stopped: subscription expired',
    );
  });
});

describe('evaluateAll and enforce', () => {
  it('returns the four decisions of one rule', () => {
    const all = evaluateAll({ connectivity: 'lost', subscription: 'active' });
    expect(Object.keys(all)).toEqual([...OPERATIONS]);
    expect(new Set(Object.values(all).map((d) => d.rule))).toEqual(new Set(['connectivity-lost']));
  });

  it('throws a gate error (exit 3) carrying the decision', () => {
    const state = { connectivity: 'connected', subscription: 'expired' } as const;
    expect(enforce(state, 'restore-disk').allowed).toBe(true);
    let caught: unknown;
    try {
      enforce(state, 'backup-cloud');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(GateRefusedError);
    expect(caught).toBeInstanceOf(StrataError);
    const e = caught as GateRefusedError;
    expect(e.code).toBe('STRATA_GATE_REFUSED');
    expect(e.kind).toBe('gate');
    expect(e.decision.operation).toBe('backup-cloud');
    expect(e.message).toBe(e.decision.message);
  });

  it('rejects an unknown state', () => {
    expect(() => decide({ connectivity: 'connected', subscription: 'paused' as SubscriptionState }, 'backup-disk')).toThrow(StrataError);
  });
});
