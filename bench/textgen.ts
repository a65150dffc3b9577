// Text-like content for the bench corpus: application logs, CSV exports, JSON lines, and small
// config/source-like text. Lines mix structure that compresses (timestamps that advance slowly,
// repeated field names, values drawn from small vocabularies) with values that do not (ids, hex
// trace ids, measurements), which gives LZ4 ratios of roughly 3-5x, like real logs.
// Lines are written byte by byte into a buffer (no string building), so this runs at a few hundred MB/s.
import { Rng } from './prng.js';

export type TextKind = 'log' | 'csv' | 'jsonl' | 'prose';

const enc = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const encAll = (xs: readonly string[]): Uint8Array[] => xs.map(enc);

// A fixed vocabulary (independent of the corpus seed): pseudo-words built from syllables.
const SYLLABLES = [
  'ka', 'to', 'ri', 'an', 'el', 'mo', 'sa', 'ne', 'lu', 'di', 'po', 'ver', 'tal', 'gen', 'str', 'ix',
  'or', 'um', 'be', 'ca', 'fi', 'ho', 'ja', 'qu', 'ze', 'wy', 'ran', 'lot', 'mis', 'pen', 'dor', 'ax',
];
function buildWords(n: number, seed: number): string[] {
  const r = new Rng(seed);
  const seen = new Set<string>();
  const words: string[] = [];
  while (words.length < n) {
    let w = '';
    const k = r.int(1, 3);
    for (let i = 0; i < k; i++) w += r.pick(SYLLABLES);
    if (!seen.has(w)) {
      seen.add(w);
      words.push(w);
    }
  }
  return words;
}
/** Pseudo-words, also used for file and directory names. */
export const WORDS: readonly string[] = buildWords(600, 0x5eed);

const W = encAll(WORDS);
const COMMON = W.slice(0, 64); // prose draws mostly from a small set of frequent words, as real text does
const USERS = W.slice(0, 200);
const SERVICES = encAll(['api', 'billing', 'auth', 'search', 'ingest', 'mailer', 'scheduler', 'gateway', 'reports', 'storage']);
const HOSTS = encAll([...Array.from({ length: 24 }, (_, i) => `web-${String(i + 1).padStart(2, '0')}`),
  ...Array.from({ length: 8 }, (_, i) => `db-${String(i + 1).padStart(2, '0')}`)]);
const REGIONS = encAll(['eu-west-1', 'eu-central-1', 'us-east-1', 'us-west-2', 'ap-southeast-1', 'ap-northeast-1']);
const RESOURCES = encAll(['users', 'orders', 'invoices', 'products', 'sessions', 'carts', 'payments', 'shipments']);
const METHODS = encAll(['GET', 'GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'PUT', 'DELETE']);
const STATUSES = encAll(['200', '200', '200', '200', '200', '200', '200', '201', '204', '304', '400', '404', '500']);
const LEVELS = encAll(['INFO ', 'INFO ', 'INFO ', 'INFO ', 'INFO ', 'INFO ', 'DEBUG', 'DEBUG', 'WARN ', 'ERROR']);
const LOGGERS = encAll(['http.server', 'db.pool', 'cache.redis', 'jobs.runner', 'auth.session', 'mail.smtp']);
const METRICS = encAll(['cpu_util,', 'mem_used,', 'disk_read,', 'disk_write,', 'net_rx,', 'net_tx,', 'req_rate,', 'latency_p99,']);
const UNITS = encAll([',pct,', ',bytes,', ',bytes_s,', ',bytes_s,', ',bytes_s,', ',bytes_s,', ',req_s,', ',ms,']);
const EVENTS = encAll(['order.created', 'order.paid', 'order.shipped', 'invoice.created', 'invoice.sent', 'user.signup', 'user.login', 'cart.updated']);
const CURRENCIES = encAll(['EUR', 'EUR', 'EUR', 'USD', 'USD', 'GBP']);
const COUNTRIES = encAll(['DE', 'FR', 'US', 'GB', 'NL', 'SE', 'ES', 'IT']);
const CODE_KW = encAll(['const ', 'let ', 'return ', 'if (', 'await ', 'export function ', 'this.']);
const CSV_HEADER = enc('id,timestamp,host,region,service,metric,value,unit,status,trace_id\n');
const HEX = enc('0123456789abcdef');

const S = {
  httpA: enc('] http.server: '), api: enc(' /api/v1/'), status: enc(' status='), bytes: enc(' bytes='),
  dur: enc(' dur_ms='), user: enc(' user='), req: enc(' req='), worker: enc('-worker-'),
  login: enc(' logged in from 10.0.'), session: enc(' session='), job: enc('job '), fin: enc(' finished in '),
  ms: enc(' ms ('), items: enc(' items)'), pool: enc('connection pool '), active: enc(':5432 active='),
  idle: enc(' idle='), waiting: enc(' waiting='),
  ok: enc('ok,'), alert: enc('alert,'),
  jTs: enc('{"ts":"'), jLevel: enc('","level":"'), info: enc('info'), warn: enc('warn'), jService: enc('","service":"'),
  jEvent: enc('","event":"'), jUserId: enc('","user_id":'), jUser: enc(',"user":"'), jAmount: enc('","amount":'),
  jCur: enc(',"currency":"'), jCountry: enc('","country":"'), jLat: enc('","latency_ms":'), jTrace: enc(',"trace":"'),
  jEnd: enc('"}\n'), eq: enc(' = '), lparen: enc('('), comma: enc(', '), endCall: enc(');\n'), endSentence: enc('.\n'),
  indent: enc('  '),
};

/** Generates lines of one text kind into byte buffers; the state (clock, counters) carries across pieces. */
export class TextGen {
  private readonly r: Rng;
  private ms: number;
  private sec = -1;
  private readonly prefix = Buffer.alloc(20);
  private seq: number;
  private started = false;
  private buf: Buffer = Buffer.alloc(0);
  private p = 0;
  /** Per-file pool of recurring ids (sessions, traces): real exports repeat them. */
  private readonly ids: Uint8Array[] = [];

  constructor(readonly kind: TextKind, seed: number) {
    this.r = new Rng(seed);
    // Somewhere in 2023-2024, so different files have different dates.
    this.ms = Date.UTC(2023, 0, 1) + this.r.int(0, 700) * 86_400_000 + this.r.int(0, 86_399_999);
    this.seq = this.r.int(1, 5_000_000);
    if (kind === 'csv') for (let i = 0; i < 256; i++) this.ids.push(enc(this.r.hex(8)));
  }

  /** A fresh buffer of whole lines, at least `approx` bytes long (at most one line more). */
  piece(approx: number): Buffer {
    this.buf = Buffer.allocUnsafe(approx + 1024);
    this.p = 0;
    if (!this.started) {
      this.started = true;
      if (this.kind === 'csv') this.put(CSV_HEADER);
    }
    while (this.p < approx) this.line();
    return this.buf.subarray(0, this.p);
  }

  private put(b: Uint8Array): void {
    const buf = this.buf;
    let p = this.p;
    for (let i = 0; i < b.length; i++) buf[p++] = b[i] as number;
    this.p = p;
  }
  private ch(c: number): void {
    this.buf[this.p++] = c;
  }
  private pick(xs: readonly Uint8Array[]): void {
    this.put(xs[(this.r.u32() % xs.length) >>> 0] as Uint8Array);
  }
  private num(n: number): void {
    if (n === 0) {
      this.ch(48);
      return;
    }
    let digits = 0;
    for (let x = n; x > 0; x = Math.floor(x / 10)) digits++;
    let p = this.p + digits;
    this.p = p;
    for (let x = n; x > 0; x = Math.floor(x / 10)) this.buf[--p] = 48 + (x % 10);
  }
  private int(lo: number, hi: number): void {
    this.num(lo + ((this.r.u32() % (hi - lo + 1)) >>> 0));
  }
  private hex(n: number): void {
    let v = 0;
    for (let i = 0; i < n; i++) {
      if ((i & 7) === 0) v = this.r.u32();
      this.ch(HEX[v & 15] as number);
      v >>>= 4;
    }
  }
  private ts(): void {
    this.ms += this.r.u32() % 41;
    const sec = Math.floor(this.ms / 1000);
    if (sec !== this.sec) {
      this.sec = sec;
      this.prefix.write(new Date(sec * 1000).toISOString().slice(0, 20), 'latin1');
    }
    this.put(this.prefix);
    const m = this.ms % 1000;
    this.ch(48 + Math.floor(m / 100));
    this.ch(48 + (Math.floor(m / 10) % 10));
    this.ch(48 + (m % 10));
    this.ch(90); // Z
  }

  private line(): void {
    const r = this.r;
    switch (this.kind) {
      case 'log': {
        this.ts();
        this.ch(32);
        this.pick(LEVELS);
        this.ch(32);
        this.ch(91); // [
        this.pick(SERVICES);
        this.put(S.worker);
        this.int(1, 8);
        const k = r.u32() % 8;
        if (k < 5) {
          this.put(S.httpA);
          this.pick(METHODS);
          this.put(S.api);
          this.pick(RESOURCES);
          this.ch(47);
          this.int(1, 9999);
          this.put(S.status);
          this.pick(STATUSES);
          this.put(S.bytes);
          this.int(0, 9999);
          this.put(S.dur);
          this.int(0, 299);
          this.put(S.user);
          this.pick(USERS);
          this.put(S.req);
          this.hex(6);
        } else {
          this.ch(93);
          this.ch(32);
          this.pick(LOGGERS);
          this.ch(58);
          this.ch(32);
          if (k === 5) {
            this.put(S.user.subarray(1));
            this.pick(USERS);
            this.put(S.login);
            this.int(1, 254);
            this.put(S.session);
            this.hex(8);
          } else if (k === 6) {
            this.put(S.job);
            this.pick(RESOURCES);
            this.put(S.fin);
            this.int(1, 9999);
            this.put(S.ms);
            this.int(0, 500);
            this.put(S.items);
          } else {
            this.put(S.pool);
            this.pick(HOSTS);
            this.put(S.active);
            this.int(0, 32);
            this.put(S.idle);
            this.int(0, 32);
            this.put(S.waiting);
            this.int(0, 4);
          }
        }
        this.ch(10);
        return;
      }
      case 'csv': {
        this.num(this.seq++);
        this.ch(44);
        this.ts();
        this.ch(44);
        this.pick(HOSTS);
        this.ch(44);
        this.pick(REGIONS);
        this.ch(44);
        this.pick(SERVICES);
        this.ch(44);
        const i = r.u32() % METRICS.length;
        this.put(METRICS[i] as Uint8Array);
        this.int(0, 999);
        this.ch(46);
        this.int(0, 9);
        this.put(UNITS[i] as Uint8Array);
        this.put(r.u32() % 32 === 0 ? S.alert : S.ok);
        this.pick(this.ids);
        this.ch(10);
        return;
      }
      case 'jsonl': {
        this.put(S.jTs);
        this.ts();
        this.put(S.jLevel);
        this.put(r.u32() % 10 === 0 ? S.warn : S.info);
        this.put(S.jService);
        this.pick(SERVICES);
        this.put(S.jEvent);
        this.pick(EVENTS);
        this.put(S.jUserId);
        this.int(1000, 99999);
        this.put(S.jUser);
        this.pick(USERS);
        this.put(S.jAmount);
        this.int(0, 999);
        this.ch(46);
        this.int(10, 99);
        this.put(S.jCur);
        this.pick(CURRENCIES);
        this.put(S.jCountry);
        this.pick(COUNTRIES);
        this.put(S.jLat);
        this.int(1, 500);
        this.put(S.jTrace);
        this.hex(10);
        this.put(S.jEnd);
        return;
      }
      case 'prose': {
        // Whole lines from a fixed pool (fast: one copy per line), with a fresh number now and then.
        this.put(proseLines()[r.u32() % PROSE_POOL] as Uint8Array);
        if (r.u32() % 4 === 0) {
          this.int(0, 99999);
          this.ch(10);
        }
        return;
      }
    }
  }

  /** One line of prose or code-like text, for the shared pool. */
  proseLine(): Uint8Array {
    const r = this.r;
    this.buf = Buffer.allocUnsafe(1024);
    this.p = 0;
    if (r.u32() % 2 === 0) {
      const ind = r.u32() % 4;
      for (let i = 0; i < ind; i++) this.put(S.indent);
      this.pick(CODE_KW);
      this.pick(COMMON);
      this.put(S.eq);
      this.pick(COMMON);
      this.put(S.lparen);
      this.pick(COMMON);
      this.put(S.comma);
      this.int(0, 99);
      this.put(S.endCall);
    } else {
      const k = 4 + (r.u32() % 10);
      for (let i = 0; i < k; i++) {
        if (i) this.ch(32);
        this.pick(r.u32() % 8 === 0 ? W : COMMON);
      }
      this.put(S.endSentence);
    }
    return Buffer.from(this.buf.subarray(0, this.p));
  }
}

const PROSE_POOL = 4096;
let prosePool: Uint8Array[] | undefined;
function proseLines(): Uint8Array[] {
  if (!prosePool) {
    const g = new TextGen('prose', 0x9705e);
    prosePool = Array.from({ length: PROSE_POOL }, () => g.proseLine());
  }
  return prosePool;
}

/** Exactly `size` bytes of text of one kind, in pieces of about `piece` bytes. */
export function* textBytes(kind: TextKind, seed: number, size: number, piece = 1 << 20): Generator<Buffer> {
  const g = new TextGen(kind, seed);
  let left = size;
  while (left > 0) {
    const b = g.piece(Math.min(piece, left));
    if (b.length >= left) {
      const last = b.subarray(0, left);
      if (left > 1) last[left - 1] = 0x0a; // end the file with a newline even when cut mid-line
      yield last;
      return;
    }
    left -= b.length;
    yield b;
  }
}
