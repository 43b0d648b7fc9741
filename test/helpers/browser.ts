import fs from 'node:fs';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';

/** Debian's Chromium (apt-get install chromium; .ci/run installs it when missing), never a downloaded build. */
export const CHROMIUM = '/usr/bin/chromium';
const LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'];

/**
 * Whether a browser test file must skip: only where Chromium is missing and CI is not 'true' (CI
 * installs it, so there a missing browser is a failure, not a skip). Says so in one line.
 */
export function skipWithoutChromium(file: string): boolean {
  const skip = !fs.existsSync(CHROMIUM) && process.env.CI !== 'true';
  if (skip) console.warn(`${file} skipped: ${CHROMIUM} is missing (apt-get install -y chromium); with CI=true it fails instead`);
  return skip;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
}

/**
 * Lets the context's pages reach `origin` only: every other request is refused (as blocked by the
 * client) and its URL pushed onto the list this returns, which a test asserts empty. `seen` hears
 * each URL that was let through.
 */
export async function confineTo(context: BrowserContext, origin: string, seen?: (url: string) => void): Promise<string[]> {
  const offOrigin: string[] = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin !== origin) {
      offOrigin.push(url);
      return route.abort('blockedbyclient');
    }
    seen?.(url);
    return route.continue();
  });
  return offOrigin;
}
