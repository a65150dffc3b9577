// The shape of strata's config file (JSON). Validation lives in schema.ts; loading in load.ts.

export type SubscriptionState = 'active' | 'expired' | 'deprovisioned';

export interface SourceConfig {
  /** A directory, or a SQLite database file when `type` is `sqlite`. */
  path: string;
  type?: 'directory' | 'sqlite';
  /** Glob patterns (minimatch, matched against the path relative to the source and against the base name). */
  exclude?: string[];
  /** Shell commands run before and after the source is read (for other applications). */
  pre?: string;
  post?: string;
}

export interface ProtectionGroupConfig {
  name: string;
  sources: SourceConfig[];
  disk: { syncFrequency: string; retentionDays: number };
  online?: {
    schedule: string;
    retention: { daily: number; weekly?: number; monthly?: number; yearly?: number };
  } | null;
}

export interface ThrottleConfig {
  /** "HH:MM-HH:MM", local time. */
  workHours: string;
  /** "mon-fri" or a comma list such as "mon,tue,wed". */
  workDays: string;
  /** Megabits per second; 0 or absent means unlimited. */
  workMbps?: number;
  otherMbps?: number;
}

/**
 * How requests to Azure reach it. Absent: the environment decides (HTTPS_PROXY, HTTP_PROXY, NO_PROXY);
 * `null`: directly, whatever the environment says; a URL or an object: through that proxy, except for
 * the hosts in `noProxy`. See `proxyFor` in src/cloud/connectivity.ts.
 */
export type ProxyConfig = null | string | { url: string; username?: string; password?: string; noProxy?: string[] };

export interface StrataConfig {
  /** Where the catalog, the control socket, logs and the registration live. */
  stateDir: string;
  /** The local storage pool (first copy). */
  pool: string;
  /** The scratch area for staging uploads and cloud restores. */
  scratch: string;
  /** A file holding the pool passphrase (at least 16 printable ASCII characters). */
  passphraseFile: string;
  protectionGroups: ProtectionGroupConfig[];
  subscription: { provider: 'arm'; managementEndpoint?: string; cacheMinutes?: number } | { provider: 'static'; state: SubscriptionState };
  throttle?: ThrottleConfig | null;
  proxy?: ProxyConfig;
  /** The embedded Azurite vault for the demo (`npm start`): started by the daemon on loopback. */
  embeddedAzurite?: { enabled: boolean; location?: string } | null;
  /** The local web console: `listen` is "host:port" (an IPv6 host in brackets). */
  console?: { listen: string } | null;
  /**
   * The IANA time zone in which schedules (cron expressions), work hours and retention days are read.
   * Default: the host's time zone.
   */
  timezone?: string;
  /** The file the config was loaded from (set by the loader, not written in the file). */
  configFile?: string;
}
