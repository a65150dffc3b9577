// Passphrase policy, generation and reading from a file.
import { randomInt } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { StrataError } from '../errors.js';

export const MIN_PASSPHRASE_LENGTH = 16;

/** Throws STRATA_PASSPHRASE_WEAK unless `p` is at least 16 printable ASCII characters (space to `~`). */
export function validatePassphrase(p: string): void {
  if (p.length < MIN_PASSPHRASE_LENGTH) {
    throw new StrataError(
      'STRATA_PASSPHRASE_WEAK',
      `passphrase is ${p.length} characters; it must be at least ${MIN_PASSPHRASE_LENGTH} printable ASCII characters (strata init --generate-passphrase makes one)`,
    );
  }
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      throw new StrataError('STRATA_PASSPHRASE_WEAK', `passphrase has a character that is not printable ASCII at position ${i + 1}; use letters, digits, punctuation and spaces only`);
    }
  }
}

// No 0/O, 1/l/I: generated passphrases are written down and read back by people.
const ALPHABET = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/** A random passphrase of 6 groups of 5 characters (about 175 bits), dash-separated. */
export function generatePassphrase(): string {
  const groups: string[] = [];
  for (let g = 0; g < 6; g++) {
    let s = '';
    for (let i = 0; i < 5; i++) s += ALPHABET[randomInt(ALPHABET.length)];
    groups.push(s);
  }
  return groups.join('-');
}

export interface PassphraseFileResult {
  passphrase: string;
  /** Set when the file can be read by group or others: the caller warns. */
  warning?: string;
}

/** Reads a passphrase file (one trailing newline is removed) and checks the policy. */
export function readPassphraseFile(file: string): PassphraseFileResult {
  let text: string;
  let mode: number;
  try {
    text = readFileSync(file, 'utf8');
    mode = statSync(file).mode;
  } catch (err) {
    throw new StrataError('STRATA_PASSPHRASE_FILE', `cannot read passphrase file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; set "passphraseFile" in the config to a readable file`, {
      cause: err,
    });
  }
  const passphrase = text.replace(/\r?\n$/, '');
  validatePassphrase(passphrase);
  const result: PassphraseFileResult = { passphrase };
  if ((mode & 0o077) !== 0) result.warning = `passphrase file ${file} is readable by group or others (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${file}`;
  return result;
}
