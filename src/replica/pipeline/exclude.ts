// Exclusion patterns of a data source, as the backup walk applies them (also in worker threads).
import { minimatch } from 'minimatch';

/**
 * A predicate over paths relative to the source root ("a/b.txt"): true when any pattern matches. A
 * pattern without "/" matches a name at any depth (`*.tmp`); dot files are matched like others. A
 * match on a directory excludes everything below it (the walk does not enter it).
 */
export function excluder(patterns: readonly string[]): ((rel: string) => boolean) | null {
  if (patterns.length === 0) return null;
  const matchers = patterns.map((pattern) => {
    const options = { dot: true, matchBase: !pattern.includes('/') };
    return (rel: string) => minimatch(rel, pattern, options);
  });
  return (rel) => matchers.some((m) => m(rel));
}
