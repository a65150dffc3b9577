// Fault injection around any object store, for tests: `store.on('put', /^packs\//).errorInstead(err).repeat(2)`.
import { systemClock, type Clock } from '../clock.js';
import { throwIfAborted } from '../errors.js';
import type { ByteRange, ObjectInfo, ObjectStore, StoreOptions } from './object-store.js';

export type FaultOperation = 'put' | 'get' | 'stat' | 'list' | 'delete';

type Action =
  | { kind: 'errorInstead'; error: () => unknown }
  | { kind: 'errorAfter'; error: () => unknown }
  | { kind: 'delay'; ms: number }
  | { kind: 'corrupt' }
  | { kind: 'errorAfterItems'; items: number; error: () => unknown };

/**
 * One rule: which calls it matches and what it does to them. It lets `skip` matching calls through
 * first, then acts on the next `times` matching calls (default 1), then matches nothing.
 */
export class FaultRule {
  readonly ops: ReadonlySet<FaultOperation>;
  readonly pattern: RegExp | undefined;
  readonly action: Action;
  #skip = 0;
  #times = 1;
  #fired = 0;

  constructor(ops: ReadonlySet<FaultOperation>, pattern: RegExp | undefined, action: Action) {
    this.ops = ops;
    this.pattern = pattern;
    this.action = action;
  }

  /** Acts on `n` matching calls in all. */
  repeat(n: number): this {
    this.#times = n;
    return this;
  }

  /** Acts on every matching call. */
  always(): this {
    this.#times = Infinity;
    return this;
  }

  /** Lets the first `n` matching calls through untouched. */
  afterCalls(n: number): this {
    this.#skip = n;
    return this;
  }

  /** How many calls this rule has acted on. */
  get fired(): number {
    return this.#fired;
  }

  /** Called once per matching call: true when the rule acts on it. */
  take(op: FaultOperation, key: string): boolean {
    if (!this.ops.has(op) || (this.pattern && !this.pattern.test(key))) return false;
    if (this.#skip > 0) {
      this.#skip--;
      return false;
    }
    if (this.#fired >= this.#times) return false;
    this.#fired++;
    return true;
  }
}

/** The actions a rule can take, for the operations and keys chosen with `FaultStore.on`. */
export class FaultTarget {
  readonly #add: (action: Action) => FaultRule;
  constructor(add: (action: Action) => FaultRule) {
    this.#add = add;
  }
  /** Fails the call without reaching the inner store. `error` may be a factory for a fresh error each time. */
  errorInstead(error: unknown): FaultRule {
    return this.#add({ kind: 'errorInstead', error: factory(error) });
  }
  /** Lets the inner store do the operation, then fails the call (a reply lost after the work was done). */
  errorAfter(error: unknown): FaultRule {
    return this.#add({ kind: 'errorAfter', error: factory(error) });
  }
  /** Waits `ms` on the store's clock (honouring the signal), then lets the call through. */
  delay(ms: number): FaultRule {
    return this.#add({ kind: 'delay', ms });
  }
  /** For get: flips one bit in the middle of the returned bytes. */
  corrupt(): FaultRule {
    return this.#add({ kind: 'corrupt' });
  }
  /** For list: reports `items` objects, then fails. */
  errorAfterItems(items: number, error: unknown): FaultRule {
    return this.#add({ kind: 'errorAfterItems', items, error: factory(error) });
  }
}

/**
 * An ObjectStore that passes calls to an inner store, except where a rule says otherwise. Rules are
 * tried in the order they were added; the first that acts on a call decides it, so at most one
 * fault applies per call. For list, rules match the prefix. `calls` counts every call by operation.
 */
export class FaultStore implements ObjectStore {
  readonly #inner: ObjectStore;
  readonly #clock: Clock;
  readonly #rules: FaultRule[] = [];
  readonly calls: Record<FaultOperation, number> = { put: 0, get: 0, stat: 0, list: 0, delete: 0 };

  constructor(inner: ObjectStore, options: { clock?: Clock } = {}) {
    this.#inner = inner;
    this.#clock = options.clock ?? systemClock;
  }

  get capabilities() {
    return this.#inner.capabilities;
  }

  get location(): string {
    return this.#inner.location;
  }

  /** Chooses the operations (one, a list, or '*' for all) and optionally the keys a new rule applies to. */
  on(ops: FaultOperation | FaultOperation[] | '*', keys?: RegExp | string): FaultTarget {
    const set = new Set<FaultOperation>(ops === '*' ? ['put', 'get', 'stat', 'list', 'delete'] : Array.isArray(ops) ? ops : [ops]);
    const pattern = typeof keys === 'string' ? new RegExp(`^${keys.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`) : keys;
    return new FaultTarget((action) => {
      const rule = new FaultRule(set, pattern, action);
      this.#rules.push(rule);
      return rule;
    });
  }

  /** Removes every rule. */
  clear(): void {
    this.#rules.length = 0;
  }

  async put(key: string, data: Uint8Array, options?: StoreOptions): Promise<void> {
    await this.#around('put', key, options, () => this.#inner.put(key, data, options));
  }

  async get(key: string, options?: StoreOptions & { range?: ByteRange }): Promise<Buffer> {
    return this.#around('get', key, options, () => this.#inner.get(key, options));
  }

  async stat(key: string, options?: StoreOptions): Promise<ObjectInfo> {
    return this.#around('stat', key, options, () => this.#inner.stat(key, options));
  }

  async delete(key: string, options?: StoreOptions): Promise<void> {
    await this.#around('delete', key, options, () => this.#inner.delete(key, options));
  }

  async *list(prefix: string, options?: StoreOptions): AsyncIterable<ObjectInfo> {
    this.calls.list++;
    const action = this.#match('list', prefix);
    if (action?.kind === 'errorInstead') throw action.error();
    if (action?.kind === 'delay') await this.#clock.sleep(action.ms, options?.signal);
    let count = 0;
    for await (const info of this.#inner.list(prefix, options)) {
      if (action?.kind === 'errorAfterItems' && count === action.items) throw action.error();
      count++;
      yield info;
    }
    if (action?.kind === 'errorAfterItems' || action?.kind === 'errorAfter') throw action.error();
  }

  #match(op: FaultOperation, key: string): Action | undefined {
    return this.#rules.find((rule) => rule.take(op, key))?.action;
  }

  async #around<T>(op: FaultOperation, key: string, options: StoreOptions | undefined, call: () => Promise<T>): Promise<T> {
    this.calls[op]++;
    throwIfAborted(options?.signal);
    const action = this.#match(op, key);
    if (action?.kind === 'errorInstead') throw action.error();
    if (action?.kind === 'delay') await this.#clock.sleep(action.ms, options?.signal);
    const result = await call();
    if (action?.kind === 'errorAfter') throw action.error();
    if (action?.kind === 'corrupt' && Buffer.isBuffer(result) && result.length > 0) {
      const copy = Buffer.from(result);
      copy[copy.length >> 1]! ^= 0x01;
      return copy as T;
    }
    return result;
  }
}

function factory(error: unknown): () => unknown {
  return typeof error === 'function' ? (error as () => unknown) : () => error;
}
