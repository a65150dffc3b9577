#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node
// The `strata` command: parses arguments, runs the job (in-process, or through the daemon when it
// runs), prints one clear line per error, and maps errors to exit codes:
// 0 success, 1 failed job, 2 bad usage or input, 3 refused by the gating table.
//
// MALLOC_ARENA_MAX=2 (glibc; ignored elsewhere): the backup's worker threads and libuv's pool each
// got a malloc arena of their own that kept freed buffers, ~10-20 MiB of peak RSS backing up 2 GiB
// (peak 242-254 → 231-234 MiB, same time, measured). Set on the `#!` line so it holds from the
// process's first allocation; the daemon and its jobs inherit it.
import { startEarly } from './agent/early-start.js';

const argv = process.argv.slice(2);
// Threads the command will need first start before its modules load (early-start.ts): a backup's
// lister boots meanwhile. The command's modules are loaded after, hence the dynamic import.
const early = startEarly(argv);
const { main } = await import('./cli/commands.js');
process.exitCode = await main(argv, undefined, early);
