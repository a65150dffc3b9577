// Deterministic crash points for the crash tests: when STRATA_CRASH_POINT names a point (optionally
// with "#n" for its n-th passage), the process kills itself with SIGKILL there, as a power cut would;
// with ":SIGINT" or ":SIGTERM" after it, the process sends itself that signal instead, as a user's
// Ctrl-C or a service manager would (the job goes on until the signal is handled). Costs one
// environment lookup per passage when unset.

const wanted = process.env['STRATA_CRASH_POINT'];
const counts = new Map<string, number>();

export function crashPoint(name: string): void {
  if (!wanted) return;
  const n = (counts.get(name) ?? 0) + 1;
  counts.set(name, n);
  const [where, signal] = wanted.split(':');
  const [point, nth] = where!.split('#');
  if (point === name && n === Number(nth ?? '1')) process.kill(process.pid, signal === 'SIGINT' || signal === 'SIGTERM' ? signal : 'SIGKILL');
}
