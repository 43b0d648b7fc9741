import { randomBytes } from 'node:crypto';
import type { Browser, ConsoleMessage, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { confineTo, launchChromium, skipWithoutChromium } from './helpers/browser.ts';

/**
 * GraphiQL as a person uses it, in Debian's Chromium against the listener `npm start` serves, with
 * every request off the gateway blocked (and failing the test): the page, its styles, scripts and
 * Monaco's workers all come from the gateway, so GraphiQL works on a machine without internet.
 */

const skip = skipWithoutChromium('graphiql-browser.test.ts');

describe.skipIf(skip)('GraphiQL in a browser, offline', () => {
  let gateway: TestServer;
  let browser: Browser;
  const moduleName = `offline-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    // The browser start overlaps the server start: together they are most of this file's time.
    const launched = launchChromium();
    gateway = await startTestServer();
    // Data only the store can answer with: a module installed over the API.
    const installed = await fetch(gateway.server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${gateway.adminKey}` },
      body: JSON.stringify({
        query: 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }',
        variables: { i: { id: 'graphiql-check', name: moduleName, version: '1.0.0' } },
      }),
    });
    expect(((await installed.json()) as { errors?: unknown }).errors).toBeUndefined();
    browser = await launched;
  });

  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
  });

  /** Replace an editor's text as a user does: click into it, select all, type. */
  async function typeInto(page: Page, editor: string, text: string): Promise<void> {
    await page.locator(editor).click();
    await page.keyboard.press('ControlOrMeta+A');
    await page.keyboard.press('Delete');
    // Typed, not inserted: Monaco closes brackets and quotes, and typing over them keeps the text as typed.
    await page.keyboard.type(text);
  }

  it('loads from the gateway alone, takes a key, fills the docs explorer and runs a query', async () => {
    const { origin, adminKey } = gateway;
    const pageUrl = gateway.server.url;
    const context = await browser.newContext();
    const fromGateway: string[] = [];
    const offGateway = await confineTo(context, origin, (url) => fromGateway.push(new URL(url).pathname));
    const page = await context.newPage();
    let keyEntered = false;
    const consoleErrors: string[] = [];
    const expected401s: string[] = [];
    page.on('console', (message: ConsoleMessage) => {
      if (message.type() !== 'error') return;
      const line = `${message.text()} (${message.location().url})`;
      // Before the key is typed, GraphiQL's introspection carries the placeholder key and gets the
      // gateway's 401, which Chromium logs as an error. That is the only error allowed.
      if (!keyEntered && /status of 401/.test(message.text()) && message.location().url === pageUrl) expected401s.push(line);
      else consoleErrors.push(line);
    });
    page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));
    page.setDefaultTimeout(15_000);

    try {
      const loaded = await page.goto(pageUrl);
      expect(loaded?.status()).toBe(200);
      expect(loaded?.headers()['content-security-policy'] ?? 'no CSP').toContain("script-src 'self'");
      await page.locator('.graphiql-query-editor .monaco-editor').waitFor();

      // Without a key the schema cannot be fetched: the docs explorer says so.
      await page.locator('button[aria-label="Show Documentation Explorer"]').click();
      const docs = page.locator('.graphiql-doc-explorer');
      await docs.getByText('Error fetching schema').waitFor();

      await page.locator('button[data-name="headers"]').click();
      keyEntered = true;
      await typeInto(page, '.monaco-editor[data-uri$="-request-headers.json"]', `{"Authorization": "Bearer ${adminKey}"}`);

      // With the key the schema arrives without a reload (the page asks GraphiQL to refetch it).
      await docs.getByText('Root Types').waitFor({ timeout: 10_000 });
      await expect.poll(() => docs.innerText()).toMatch(/query:\s*Query/);

      await typeInto(page, '.graphiql-query-editor .monaco-editor', '{ viewer { org { id } } modules { edges { node { name } } } }');
      await page.locator('.graphiql-execute-button').click();
      const response = page.locator('.graphiql-response');
      await response.getByText(moduleName).waitFor({ timeout: 10_000 });
      const shown = await response.innerText();
      expect(shown).toContain('"default"');
      expect(shown).toContain(`"${moduleName}"`);
      expect(shown).not.toMatch(/"errors"/);
    } catch (error) {
      // What the page tried off the gateway, or logged, is most often why a step above failed.
      const why = `requests off the gateway: ${offGateway.join(' ') || 'none'}; console errors: ${consoleErrors.join(' | ') || 'none'}`;
      throw new Error(`${(error as Error).message}\n${why}`, { cause: error });
    } finally {
      await context.close();
    }

    expect(offGateway).toEqual([]);
    expect(consoleErrors).toEqual([]);
    expect(expected401s.length).toBeGreaterThan(0);
    // Monaco's workers are the gateway's assets too, not blob: URLs (the CSP allows no blob:).
    for (const name of ['graphiql', 'editor-worker', 'json-worker', 'graphql-worker']) {
      expect(fromGateway.some((p) => p.startsWith(`/graphiql/${name}-`))).toBe(true);
    }
  });
});
