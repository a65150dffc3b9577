// What a backup job covers: a protection group's sources, or one ad hoc directory (--path).
import path from 'node:path';
import type { SourceConfig, StrataConfig } from '../config/types.js';
import { StrataError } from '../errors.js';

export interface BackupRequest {
  group?: string;
  path?: string;
  /** With `path`: glob patterns to leave out. */
  exclude?: string[];
}

/** Resolves what a backup job covers. Throws a usage error for a request that names neither or both, or an unknown group. */
export function backupSources(config: StrataConfig, request: BackupRequest): { group: string; sources: SourceConfig[] } {
  if (request.path !== undefined) {
    if (request.group !== undefined) throw new StrataError('STRATA_USAGE', 'give a protection group or --path, not both', { kind: 'usage' });
    return { group: '', sources: [{ path: path.resolve(request.path), type: 'directory', exclude: request.exclude ?? [] }] };
  }
  if (request.group === undefined) throw new StrataError('STRATA_USAGE', 'name a protection group, or give --path DIR for an ad hoc backup', { kind: 'usage' });
  const group = config.protectionGroups.find((g) => g.name === request.group);
  if (!group) {
    const known = config.protectionGroups.map((g) => g.name);
    throw new StrataError('STRATA_GROUP_UNKNOWN', `no protection group "${request.group}" in ${config.configFile ?? 'the config'}${known.length ? ` (known: ${known.join(', ')})` : ''}`, {
      kind: 'usage',
    });
  }
  return { group: group.name, sources: group.sources };
}

/** The exclusion patterns a source is backed up with. */
export function sourceExclude(source: SourceConfig, request: { exclude?: string[] }): string[] {
  return source.exclude ?? request.exclude ?? [];
}

/**
 * True when a source's tree may be listed before its backup starts: a plain directory without a pre
 * hook (a hook may still change it; a SQLite source is copied first and the copy is what is walked).
 */
export function listableEarly(source: SourceConfig): boolean {
  return source.type !== 'sqlite' && !source.pre;
}

/** How a backup's progress is labelled (the CLI's progress line, a follower's events): the source, and its pre command while it runs. */
export function backupLabel(p: { source: string; phase: string }): string {
  return p.phase === 'pre command' ? `backup ${p.source}: pre command` : `backup ${p.source}`;
}
