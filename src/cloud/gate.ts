// Gating: whether a backup or restore may run, given connectivity to Azure and the subscription state.
// Pure: the caller supplies the state (connectivity.ts, subscription.ts); this file only applies DESIGN.md's table.
import { StrataError } from '../errors.js';
import type { SubscriptionState } from '../config/types.js';

export type Connectivity = 'connected' | 'lost';
export type Operation = 'backup-cloud' | 'backup-disk' | 'restore-cloud' | 'restore-disk';

export const OPERATIONS: readonly Operation[] = ['backup-cloud', 'backup-disk', 'restore-cloud', 'restore-disk'];

export interface GateState {
  connectivity: Connectivity;
  subscription: SubscriptionState;
  /** Epoch ms of the last successful contact with Azure; null or absent when there has been none. Only used in messages. */
  lastContact?: number | null;
  /** Epoch ms since when the subscription has been in its current state, when known. Only used in messages. */
  subscriptionSince?: number | null;
}

/**
 * The rule (row of the table) that applies to a state. Every decision for a state names the same rule,
 * allowed or not, so `strata cloud status` can show one rule for the four operations.
 */
export type GateRule =
  | 'connected-active'
  | 'subscription-expired'
  | 'subscription-deprovisioned'
  | 'connectivity-lost'
  | 'connectivity-lost-subscription-expired'
  | 'connectivity-lost-subscription-deprovisioned';

export interface GateDecision {
  operation: Operation;
  allowed: boolean;
  rule: GateRule;
  /**
   * One line for the user. A refusal reads "<operation> stopped: <why>; <what remains allowed>; <what lifts it>";
   * an allowed operation reads "<operation> allowed" plus the restriction in force, if any.
   */
  message: string;
  /** What lifts the rule ('' when the operation is allowed). */
  lifts: string;
  /**
   * True whenever the subscription is deprovisioned (for every operation, not only restore from cloud):
   * the vault's recovery points are gone, and the catalog should treat cloud recovery points as deleted.
   */
  cloudPointsDeleted: boolean;
}

type Cell = 'allowed' | 'stopped';
interface Row {
  rule: GateRule;
  cells: Record<Operation, Cell>;
}

const ALL: Record<Operation, Cell> = { 'backup-cloud': 'allowed', 'backup-disk': 'allowed', 'restore-cloud': 'allowed', 'restore-disk': 'allowed' };
const RESTORES_ONLY: Record<Operation, Cell> = { 'backup-cloud': 'stopped', 'backup-disk': 'stopped', 'restore-cloud': 'allowed', 'restore-disk': 'allowed' };
const NONE: Record<Operation, Cell> = { 'backup-cloud': 'stopped', 'backup-disk': 'stopped', 'restore-cloud': 'stopped', 'restore-disk': 'stopped' };

/** DESIGN.md, "Gating": the six rows. */
const TABLE: Record<Connectivity, Record<SubscriptionState, Row>> = {
  connected: {
    active: { rule: 'connected-active', cells: ALL },
    expired: { rule: 'subscription-expired', cells: RESTORES_ONLY },
    deprovisioned: { rule: 'subscription-deprovisioned', cells: NONE },
  },
  lost: {
    active: { rule: 'connectivity-lost', cells: RESTORES_ONLY },
    expired: { rule: 'connectivity-lost-subscription-expired', cells: RESTORES_ONLY },
    deprovisioned: { rule: 'connectivity-lost-subscription-deprovisioned', cells: NONE },
  },
};

const LABEL: Record<Operation, string> = {
  'backup-cloud': 'backup to cloud',
  'backup-disk': 'backup to disk',
  'restore-cloud': 'restore from cloud',
  'restore-disk': 'restore from disk',
};

/** Applies the gating table to one operation. Total: every (state, operation) has a decision. */
export function decide(state: GateState, op: Operation): GateDecision {
  const row = TABLE[state.connectivity]?.[state.subscription];
  if (!row || !(op in LABEL)) {
    throw new StrataError('STRATA_GATE_STATE', `unknown gating state or operation: ${state.connectivity}/${state.subscription}/${op}`, {
      kind: 'failed',
    });
  }
  const allowed = row.cells[op] === 'allowed';
  const why = reason(state);
  const cloudPointsDeleted = state.subscription === 'deprovisioned';
  if (allowed) {
    const message = row.rule === 'connected-active' ? `${LABEL[op]} allowed` : `${LABEL[op]} allowed; backups are stopped: ${why}`;
    return { operation: op, allowed, rule: row.rule, message, lifts: '', cloudPointsDeleted };
  }
  const lifts = liftsFor(state);
  const remaining = remainingAllowed(row, op);
  const deleted = cloudPointsDeleted ? '; Azure recovery points are deleted' : '';
  const message = `${LABEL[op]} stopped: ${why}${deleted}; ${remaining}; ${lifts}`;
  return { operation: op, allowed, rule: row.rule, message, lifts, cloudPointsDeleted };
}

/** The four decisions for a state, in OPERATIONS order (what `strata cloud status` shows). */
export function evaluateAll(state: GateState): Record<Operation, GateDecision> {
  return {
    'backup-cloud': decide(state, 'backup-cloud'),
    'backup-disk': decide(state, 'backup-disk'),
    'restore-cloud': decide(state, 'restore-cloud'),
    'restore-disk': decide(state, 'restore-disk'),
  };
}

/** Throws GateRefusedError when the operation is refused; returns the decision otherwise. */
export function enforce(state: GateState, op: Operation): GateDecision {
  const decision = decide(state, op);
  if (!decision.allowed) throw new GateRefusedError(decision);
  return decision;
}

/** A refusal by the gating table: exit code 3. The message is the decision's one-line message. */
export class GateRefusedError extends StrataError {
  readonly decision: GateDecision;
  constructor(decision: GateDecision, options: { cause?: unknown } = {}) {
    super('STRATA_GATE_REFUSED', decision.message, { kind: 'gate', ...options });
    this.name = 'GateRefusedError';
    this.decision = decision;
  }
}

function day(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function subscriptionReason(state: GateState): string {
  const since = state.subscriptionSince != null ? ` (since ${day(state.subscriptionSince)})` : '';
  return `subscription ${state.subscription}${since}`;
}

function connectivityReason(state: GateState): string {
  return state.lastContact != null
    ? `connectivity to Azure lost (last contact ${day(state.lastContact)}, more than 15 days ago)`
    : 'connectivity to Azure lost (no successful contact recorded)';
}

function reason(state: GateState): string {
  const parts: string[] = [];
  if (state.connectivity === 'lost') parts.push(connectivityReason(state));
  if (state.subscription !== 'active') parts.push(subscriptionReason(state));
  return parts.join(' and ');
}

function liftsFor(state: GateState): string {
  const needs: string[] = [];
  if (state.connectivity === 'lost') needs.push('Azure is reached again (check the network and proxy, then run `strata cloud status`)');
  if (state.subscription === 'expired') needs.push('the subscription is active');
  if (state.subscription === 'deprovisioned') needs.push('the server is registered with a vault whose subscription is active');
  const what = state.subscription === 'deprovisioned' ? 'backups and restores resume' : 'backups resume';
  return `${what} when ${needs.join(' and ')}`;
}

function remainingAllowed(row: Row, op: Operation): string {
  const others = (Object.keys(row.cells) as Operation[]).filter((o) => o !== op && row.cells[o] === 'allowed');
  if (others.length === 0) return 'no backup or restore remains allowed';
  const restores = others.filter((o) => o.startsWith('restore-'));
  const backups = others.filter((o) => o.startsWith('backup-'));
  const phrase = (kind: 'backup' | 'restore', ops: Operation[]): string | null => {
    if (ops.length === 0) return null;
    const where = ops.map((o) => o.slice(kind.length + 1)).sort((a, b) => (a === 'disk' ? -1 : b === 'disk' ? 1 : 0));
    const noun = kind === 'backup' ? (ops.length > 1 ? 'backups to' : 'backup to') : ops.length > 1 ? 'restores from' : 'restore from';
    return `${noun} ${where.join(' and ')}`;
  };
  const list = [phrase('restore', restores), phrase('backup', backups)].filter((p): p is string => p !== null);
  return `${list.join(' and ')} ${others.length > 1 ? 'remain' : 'remains'} allowed`;
}
