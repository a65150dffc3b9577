// A loopback HTTP server that answers GET /subscriptions/{id} the way Azure Resource Manager does, for tests.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** ARM's subscription states (SubscriptionState in the ARM API); any other string may be set to test unknown ones. */
export type ArmState = 'Enabled' | 'Warned' | 'PastDue' | 'Disabled' | 'Deleted' | (string & {});

export interface ArmServerOptions {
  /** The subscription the server knows; others answer 404 SubscriptionNotFound. Default: a fixed GUID. */
  subscriptionId?: string;
  state?: ArmState;
  /** When set, only this bearer token is accepted; otherwise any non-empty one is. */
  token?: string;
}

export interface ArmServer {
  /** http://127.0.0.1:PORT, to pass as managementEndpoint. */
  readonly endpoint: string;
  readonly subscriptionId: string;
  /** The state the next answer reports. */
  state: ArmState;
  /** Requests received (any path, any outcome). */
  readonly requests: number;
  /** The bearer tokens received, in order. */
  readonly tokens: string[];
  /** The request URLs (path and query) received, in order. */
  readonly urls: string[];
  /** Answers the next `count` requests with `status` (default 500) and an ARM error body. */
  failNext(count: number, status?: number): void;
  /** Accepts the next `count` requests but never answers them (until close). */
  hangNext(count: number): void;
  close(): Promise<void>;
}

export const DEFAULT_SUBSCRIPTION_ID = '00000000-1111-2222-3333-444444444444';

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function armError(code: string, message: string) {
  return { error: { code, message } };
}

export async function startArmServer(options: ArmServerOptions = {}): Promise<ArmServer> {
  const subscriptionId = options.subscriptionId ?? DEFAULT_SUBSCRIPTION_ID;
  let failures: { count: number; status: number } = { count: 0, status: 500 };
  let hangs = 0;
  const hanging = new Set<ServerResponse>();
  const tokens: string[] = [];
  const urls: string[] = [];
  let requests = 0;

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    requests++;
    urls.push(req.url ?? '');
    if (hangs > 0) {
      hangs--;
      hanging.add(res);
      return;
    }
    if (failures.count > 0) {
      failures.count--;
      return send(res, failures.status, armError('InternalServerError', 'Encountered internal server error.'));
    }
    const url = new URL(req.url ?? '/', 'http://arm.local');
    const auth = req.headers.authorization ?? '';
    const bearer = /^Bearer (\S+)$/.exec(auth)?.[1];
    if (!bearer) {
      return send(res, 401, armError('AuthenticationFailed', "Authentication failed. The 'Authorization' header is missing."), {
        'www-authenticate': 'Bearer authorization_uri="https://login.microsoftonline.com/common"',
      });
    }
    tokens.push(bearer);
    if (options.token !== undefined && bearer !== options.token) {
      return send(res, 401, armError('InvalidAuthenticationToken', 'The access token is invalid.'));
    }
    if (req.method !== 'GET') return send(res, 405, armError('MethodNotAllowed', 'The requested method is not allowed.'));
    const match = /^\/subscriptions\/([^/]+)\/?$/.exec(url.pathname);
    if (!match) return send(res, 404, armError('InvalidResourceType', 'The resource type could not be found.'));
    if (!url.searchParams.get('api-version')) {
      return send(res, 400, armError('MissingApiVersionParameter', "The api-version query parameter (?api-version=) is required for all requests."));
    }
    const id = decodeURIComponent(match[1]!);
    if (id.toLowerCase() !== subscriptionId.toLowerCase()) {
      return send(res, 404, armError('SubscriptionNotFound', `The subscription '${id}' could not be found.`));
    }
    send(res, 200, {
      id: `/subscriptions/${subscriptionId}`,
      authorizationSource: 'RoleBased',
      subscriptionId,
      tenantId: 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee',
      displayName: 'strata test subscription',
      state: server.state,
      subscriptionPolicies: { locationPlacementId: 'Public_2014-09-01', quotaId: 'PayAsYouGo_2014-09-01', spendingLimit: 'Off' },
    });
  };

  const http = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = http.address() as AddressInfo;

  const server: ArmServer = {
    endpoint: `http://127.0.0.1:${port}`,
    subscriptionId,
    state: options.state ?? 'Enabled',
    get requests() {
      return requests;
    },
    tokens,
    urls,
    failNext(count, status = 500) {
      failures = { count, status };
    },
    hangNext(count) {
      hangs = count;
    },
    close() {
      for (const res of hanging) res.destroy();
      hanging.clear();
      http.closeAllConnections();
      return new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
  return server;
}
