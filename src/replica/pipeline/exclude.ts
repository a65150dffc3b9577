// Exclusion patterns of a data source, as the backup walk applies them (also in worker threads).
import { createRequire } from 'node:module';

type Minimatch = typeof import('minimatch').minimatch;

/**
 * minimatch, loaded on the first source that has patterns: most have none, and the lister thread
 * that walks ahead of a backup starts its walk ~20 ms sooner on a cold cache without loading it.
 */
function minimatch(): Minimatch {
  return (createRequire(import.meta.url)('minimatch') as typeof import('minimatch')).minimatch;
}

/**
 * A predicate over paths relative to the source root ("a/b.txt"): true when any pattern matches. A
 * pattern without "/" matches a name at any depth (`*.tmp`); dot files are matched like others. A
 * match on a directory excludes everything below it (the walk does not enter it).
 */
export function excluder(patterns: readonly string[]): ((rel: string) => boolean) | null {
  if (patterns.length === 0) return null;
  const match = minimatch();
  const matchers = patterns.map((pattern) => {
    const options = { dot: true, matchBase: !pattern.includes('/') };
    return (rel: string) => match(rel, pattern, options);
  });
  return (rel) => matchers.some((m) => m(rel));
}
