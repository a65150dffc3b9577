#!/usr/bin/env node
// The `strata` command: parses arguments, runs the job (in-process, or through the daemon when it
// runs), prints one clear line per error, and maps errors to exit codes:
// 0 success, 1 failed job, 2 bad usage or input, 3 refused by the gating table.
import { main } from './cli/commands.js';

process.exitCode = await main(process.argv.slice(2));
