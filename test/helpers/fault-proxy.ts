// A loopback HTTP proxy in front of Azurite (or any HTTP server) that injects faults by rule: error
// statuses, connections reset mid-request or mid-response, and stalls; each rule bounded by a count.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FaultKind = 'status503' | 'status500' | 'resetRequest' | 'resetResponse' | 'stall';

export interface ProxyFaultRule {
  kind: FaultKind;
  /** At most this many requests get this fault. */
  count: number;
  /** The chance a matching request gets it, drawn from the proxy's seeded generator. Default 1. */
  probability?: number;
  /** Only among the first N requests the proxy receives. */
  withinFirst?: number;
  method?: string;
  /** Tested against the request path with its query (`/devstoreaccount1/c/blob?comp=block…`). */
  path?: RegExp;
  /** For 'stall': how long to hold the request before forwarding it. Default 1000 ms. */
  stallMs?: number;
}

export interface ProxyLogEntry {
  /** The request's number, from 1. */
  n: number;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  fault?: FaultKind;
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** The Azurite account endpoint through the proxy: `http://127.0.0.1:PORT/devstoreaccount1`. */
  readonly endpoint: string;
  /** Requests received, and faults injected by kind. */
  readonly stats: { requests: number; forwarded: number; faults: Record<FaultKind, number> };
  readonly log: readonly ProxyLogEntry[];
  addRule(rule: ProxyFaultRule): void;
  clearRules(): void;
  /** Stops listening and destroys every open connection. */
  close(): Promise<void>;
}

/**
 * Starts the proxy on a free loopback port, forwarding to `target`. Faults are decided per request:
 * the first rule (in order added) that matches, has count left and wins its draw applies.
 * - status503 / status500: the request body is read and dropped; an Azure-style XML error answers.
 *   Nothing reaches the target.
 * - resetRequest: the connection is destroyed after the first chunk of the body (at once without one).
 *   Nothing reaches the target.
 * - resetResponse: the request is forwarded (the target does the work), then the connection is
 *   destroyed after the headers and half of the body are sent.
 * - stall: the request is held `stallMs`, then forwarded if the client is still there.
 */
export async function startFaultProxy(target: { host?: string; port: number }, options: { seed?: number; rules?: ProxyFaultRule[] } = {}): Promise<FaultProxy> {
  const host = target.host ?? '127.0.0.1';
  const random = mulberry32(options.seed ?? 1);
  const rules = (options.rules ?? []).map((rule) => ({ ...rule, left: rule.count }));
  const stats = { requests: 0, forwarded: 0, faults: { status503: 0, status500: 0, resetRequest: 0, resetResponse: 0, stall: 0 } as Record<FaultKind, number> };
  const log: ProxyLogEntry[] = [];
  const agent = new http.Agent({ keepAlive: true });
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const choose = (n: number, req: http.IncomingMessage): (ProxyFaultRule & { left: number }) | undefined => {
    for (const rule of rules) {
      if (rule.left <= 0) continue;
      if (rule.withinFirst !== undefined && n > rule.withinFirst) continue;
      if (rule.method && rule.method !== req.method) continue;
      if (rule.path && !rule.path.test(req.url ?? '')) continue;
      if (random() >= (rule.probability ?? 1)) continue;
      rule.left--;
      return rule;
    }
    return undefined;
  };

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, resetMidResponse: boolean) => {
    stats.forwarded++;
    const upstream = http.request({ host, port: target.port, method: req.method, path: req.url, headers: req.headers, agent }, (up) => {
      if (!resetMidResponse) {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      up.on('data', (c: Buffer) => chunks.push(c));
      up.on('end', () => {
        const body = Buffer.concat(chunks);
        if (body.length === 0) {
          req.socket.destroy();
          return;
        }
        res.writeHead(up.statusCode ?? 502, up.headers);
        res.write(body.subarray(0, body.length >> 1), () => req.socket.destroy());
      });
    });
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  };

  const server = http.createServer((req, res) => {
    const n = ++stats.requests;
    const rule = choose(n, req);
    const entry: ProxyLogEntry = { n, method: req.method ?? '', path: req.url ?? '', headers: req.headers };
    if (rule) {
      entry.fault = rule.kind;
      stats.faults[rule.kind]++;
    }
    log.push(entry);
    switch (rule?.kind) {
      case 'status503':
      case 'status500': {
        const status = rule.kind === 'status503' ? 503 : 500;
        const code = status === 503 ? 'ServerBusy' : 'InternalError';
        req.resume();
        req.on('end', () => {
          const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>injected by the fault proxy</Message></Error>`;
          res.writeHead(status, { 'content-type': 'application/xml', 'x-ms-error-code': code, 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
        return;
      }
      case 'resetRequest': {
        const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
        if (!hasBody) {
          req.socket.destroy();
          return;
        }
        req.once('data', () => req.socket.destroy());
        return;
      }
      case 'resetResponse':
        forward(req, res, true);
        return;
      case 'stall': {
        req.pause();
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (req.socket.destroyed) return;
          req.resume();
          forward(req, res, false);
        }, rule.stallMs ?? 1000);
        timers.add(timer);
        return;
      }
      default:
        forward(req, res, false);
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    port,
    endpoint: `${url}/devstoreaccount1`,
    stats,
    log,
    addRule: (rule) => rules.push({ ...rule, left: rule.count }),
    clearRules: () => {
      rules.length = 0;
    },
    close: async () => {
      for (const timer of timers) clearTimeout(timer);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      agent.destroy();
      await closed;
    },
  };
}

/** A small seeded generator, so a fault mix is the same on every run. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
