import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Browser, BrowserContext, ConsoleMessage, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createScratchDatabase, type ScratchDatabase } from './helpers/postgres.ts';
import { startTestServer, type TestServer } from './helpers/server.ts';
import { confineTo, launchChromium, skipWithoutChromium } from './helpers/browser.ts';

/**
 * The operator dashboard as people use it, in Debian's Chromium against the listener `npm start`
 * serves: a tenant signs in with a key of their org, an operator with the admin key. Every request
 * off the gateway is blocked and fails the test, as does any console error (a CSP refusal included:
 * the page runs under its real CSP throughout). axe-core is evaluated in the page through the
 * DevTools protocol (page.evaluate, which CSP does not govern), so no step needs bypassCSP.
 */

const skip = skipWithoutChromium('dashboard-browser.test.ts');

const AXE = fs.readFileSync(path.join(process.cwd(), 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const VIEWPORT = { width: 1280, height: 800 };
const ORG = 'acme-robotics';
const TENANT_SCOPES = ['modules:read', 'modules:write', 'credentials:write', 'keys:manage', 'usage:read', 'usage:write', 'audit:read'];
/** Realistic modules for the org view (and its screenshot). */
const MODULES = [
  { id: 'github', name: 'GitHub', version: '2.4.1', uses: 1_284 },
  { id: 'jira', name: 'Jira Cloud', version: '1.9.0', uses: 211 },
  { id: 'linear', name: 'Linear', version: '0.8.3', uses: 57 },
  { id: 'pagerduty', name: 'PagerDuty', version: '3.0.0', uses: 12 },
  { id: 'slack', name: 'Slack', version: '5.2.0', uses: 3_920 },
  { id: 'stripe', name: 'Stripe', version: '12.1.0', uses: 640 },
];

interface Answer<T> {
  status: number;
  data?: T;
  errors?: { message: string; extensions?: { code?: string } }[];
}

/**
 * Whether the page still holds `text` anywhere a script could read it: its markup, its text, or
 * the value of any input (Preact sets an input's value as a property, which the markup never shows).
 */
async function pageHolds(page: Page, text: string): Promise<boolean> {
  return page.evaluate(
    (needle) =>
      document.documentElement.outerHTML.includes(needle) ||
      document.body.innerText.includes(needle) ||
      [...document.querySelectorAll('input, textarea')].some((el) => (el as HTMLInputElement).value.includes(needle)),
    text,
  );
}

describe.skipIf(skip)('the dashboard in a browser', () => {
  let gateway: TestServer;
  let scratch: ScratchDatabase | undefined;
  let browser: Browser;
  let tenantKey = '';
  let narrowKey = '';
  let screenshotPath = '';

  async function api<T>(key: string, query: string, variables?: Record<string, unknown>): Promise<Answer<T>> {
    const response = await fetch(gateway.server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ query, variables }),
    });
    return { status: response.status, ...((await response.json()) as Omit<Answer<T>, 'status'>) };
  }

  /** An operation that must succeed: its data. */
  async function ok<T>(key: string, query: string, variables?: Record<string, unknown>): Promise<T> {
    const answer = await api<T>(key, query, variables);
    if (answer.errors?.length || answer.data === undefined) throw new Error(`${query.slice(0, 60)}: ${JSON.stringify(answer.errors)}`);
    return answer.data;
  }

  async function createKey(name: string, scopes: string[]): Promise<string> {
    const data = await ok<{ createOrgApiKey: { secret: string } }>(
      gateway.adminKey,
      'mutation($org: ID!, $i: CreateApiKeyInput!) { createOrgApiKey(orgId: $org, input: $i) { secret } }',
      { org: ORG, i: { name, scopes } },
    );
    return data.createOrgApiKey.secret;
  }

  beforeAll(async () => {
    // The browser start overlaps the server start: together they are most of this file's time.
    const launched = launchChromium();
    // In the postgres project the same server runs on a scratch PostgreSQL database, as the request role.
    if (process.env.TG_TEST_DIALECT === 'postgres') scratch = await createScratchDatabase({ migrate: false });
    gateway = await startTestServer(scratch ? { TENANTGATE_DATABASE: scratch.requestUrl, TENANTGATE_MIGRATION_DATABASE: scratch.ownerUrl } : {});
    const admin = gateway.adminKey;
    await ok(admin, 'mutation($i: CreateOrgInput!) { createOrg(input: $i) { id } }', { i: { id: ORG, name: 'Acme Robotics' } });
    await ok(admin, 'mutation($i: CreateOrgInput!) { createOrg(input: $i) { id } }', { i: { id: 'globex', name: 'Globex' } });
    tenantKey = await createKey('dashboard', TENANT_SCOPES);
    narrowKey = await createKey('read-only monitor', ['modules:read']);
    await createKey('ci-deploy', ['modules:read', 'modules:write', 'usage:write']);
    await ok(admin, 'mutation($org: ID!) { setOrgQuota(orgId: $org, input: { runUnitsPerMonth: 50000 }) { orgId } }', { org: ORG });
    for (const m of MODULES) {
      await ok(tenantKey, 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }', { i: { id: m.id, name: m.name, version: m.version } });
      await ok(admin, 'mutation($org: ID!, $m: ID!, $n: Int) { recordModuleUsage(orgId: $org, moduleId: $m, count: $n) { id } }', { org: ORG, m: m.id, n: m.uses });
    }
    // On PostgreSQL, the rows are there: the page below reads that store, not a SQLite file.
    if (scratch) expect((await scratch.query<{ n: number }>(`SELECT count(*)::int AS n FROM modules WHERE org_id = '${ORG}'`))[0]?.n).toBe(MODULES.length);
    const health = [
      ['github', 'HEALTHY', null],
      ['jira', 'HEALTHY', null],
      ['slack', 'HEALTHY', null],
      ['stripe', 'DEGRADED', 'Webhook deliveries delayed by 4 minutes'],
      ['pagerduty', 'HEALTHY', null],
    ] as const;
    for (const [id, status, message] of health) {
      await ok(admin, 'mutation($org: ID!, $m: ID!, $s: HealthStatus!, $msg: String) { reportModuleHealth(orgId: $org, moduleId: $m, status: $s, message: $msg) { id } }', {
        org: ORG,
        m: id,
        s: status,
        msg: message,
      });
    }
    // A stored credential of its own for the delete step; the value is a placeholder, not a secret.
    await ok(tenantKey, 'mutation { setCredential(moduleId: "slack", secret: { token: "xoxb-placeholder" }) { moduleId } }');
    // Two weeks of run units (a day's report each), for the usage chart.
    const now = Date.now();
    for (let day = 13; day >= 0; day--) {
      const units = 400 + ((day * 733) % 1_300);
      const occurredAt = new Date(now - day * 86_400_000 - 3_600_000).toISOString();
      await ok(tenantKey, 'mutation($i: RecordRunUnitsInput!) { recordRunUnits(input: $i) { repeat } }', {
        i: { idempotencyKey: `seed-${day}`, units, moduleId: 'github', occurredAt },
      });
    }
    // More modules than a page (20) in the operator's own org, for the "more" pagination.
    for (let i = 1; i <= 23; i++) {
      const id = `worker-${String(i).padStart(2, '0')}`;
      await ok(admin, 'mutation($i: InstallModuleInput!) { installModule(input: $i) { id } }', { i: { id, name: `Worker ${i}`, version: '1.0.0' } });
    }
    browser = await launched;
  });

  afterAll(async () => {
    await browser?.close();
    await gateway?.close();
    await scratch?.drop();
  });

  /** A fresh browser context whose requests off the gateway are recorded and refused, and whose console errors are kept. */
  async function open(
    allowed?: (message: ConsoleMessage) => boolean,
    origin = gateway.origin,
  ): Promise<{ context: BrowserContext; page: Page; offGateway: string[]; consoleErrors: string[]; allowedErrors: string[] }> {
    const context = await browser.newContext({ viewport: VIEWPORT });
    const offGateway = await confineTo(context, origin);
    const consoleErrors: string[] = [];
    const allowedErrors: string[] = [];
    const page = await context.newPage();
    page.on('console', (message: ConsoleMessage) => {
      if (message.type() !== 'error') return;
      const line = `${message.text()} (${message.location().url})`;
      if (allowed?.(message)) allowedErrors.push(line);
      else consoleErrors.push(line);
    });
    page.on('pageerror', (error) => consoleErrors.push(`uncaught: ${error.message}`));
    page.setDefaultTimeout(15_000);
    return { context, page, offGateway, consoleErrors, allowedErrors };
  }

  /** Runs steps, and on failure says what the page tried off the gateway or logged: most often the reason. */
  async function steps(run: Awaited<ReturnType<typeof open>>, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (error) {
      const why = `requests off the gateway: ${run.offGateway.join(' ') || 'none'}; console errors: ${run.consoleErrors.join(' | ') || 'none'}`;
      throw new Error(`${(error as Error).message}\n${why}`, { cause: error });
    } finally {
      await run.context.close();
    }
    expect(run.offGateway).toEqual([]);
    expect(run.consoleErrors).toEqual([]);
  }

  /** axe-core's serious and critical violations on the page as it is now. */
  async function axeViolations(page: Page, mustPass: string[]): Promise<string[]> {
    await page.evaluate(AXE);
    const results = await page.evaluate(async () => {
      const axe = (globalThis as unknown as { axe: { run: (context: Document, options: object) => Promise<{ passes: { id: string }[]; violations: { id: string; impact: string | null; nodes: { target: unknown }[] }[] }> } }).axe;
      const run = await axe.run(document, {});
      return {
        passed: run.passes.map((p) => p.id),
        violations: run.violations.map((v) => ({ id: v.id, impact: v.impact, targets: v.nodes.map((n) => JSON.stringify(n.target)).slice(0, 3) })),
      };
    });
    // The checks that matter here ran and found something to check (a page axe cannot see passes nothing).
    for (const rule of mustPass) expect(results.passed, `axe rule ${rule}`).toContain(rule);
    return results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.targets.join(', ')}`);
  }

  async function signIn(page: Page, key: string): Promise<void> {
    const response = await page.goto(`${gateway.origin}/dashboard`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-security-policy']).toContain("script-src 'self'");
    await page.getByLabel('API key', { exact: true }).fill(key);
    // The keyboard signs in: Enter in the labelled field submits its form.
    await page.getByLabel('API key', { exact: true }).press('Enter');
  }

  const row = (page: Page, attribute: string, id: string) => page.locator(`tr[${attribute}="${id}"]`);

  it('signs a tenant in, shows the org, changes it, and updates live', async () => {
    const run = await open();
    const { page, context } = run;
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: gateway.origin });
    await steps(run, async () => {
      await page.goto(`${gateway.origin}/dashboard`);
      await page.getByLabel('API key', { exact: true }).waitFor();
      expect(await axeViolations(page, ['label', 'button-name', 'color-contrast']), 'sign-in view').toEqual([]);
      await signIn(page, tenantKey);

      // The org view: every module with its health, state, credential and usage.
      await page.getByRole('heading', { level: 1, name: 'Acme Robotics' }).waitFor();
      for (const m of MODULES) await row(page, 'data-module', m.id).waitFor();
      await expect.poll(() => row(page, 'data-module', 'stripe').innerText()).toContain('Webhook deliveries delayed');
      expect(await row(page, 'data-module', 'slack').innerText()).toContain('3,920');
      expect(await row(page, 'data-module', 'slack').innerText()).toContain('Stored (token)');
      await page.locator('#usage').getByText('50,000').waitFor();
      expect(await page.locator('#usage svg rect.bar').count()).toBeGreaterThanOrEqual(14);
      await page.locator('#audit').getByText('Module install').first().waitFor();

      // The key is in sessionStorage, and nowhere else a page could leak it from.
      const stored = await page.evaluate(() => ({ session: JSON.stringify(sessionStorage), local: JSON.stringify(localStorage), url: location.href }));
      expect(stored.session).toContain(tenantKey);
      expect(stored.local).not.toContain(tenantKey);
      expect(stored.local).toBe('{}');
      expect(stored.url).not.toContain(tenantKey);
      expect(stored.url).toBe(`${gateway.origin}/dashboard`);
      expect(await context.cookies()).toEqual([]);

      // Live: the indicator says so once both ends are connected.
      await page.locator('[data-live="live"]').waitFor();
      // A marker a reload would lose: every change below must arrive in place.
      await page.evaluate(() => ((globalThis as unknown as { notReloaded: boolean }).notReloaded = true));

      // Disable a module with its switch (keyboard: focus and Space).
      const slackSwitch = page.getByRole('switch', { name: 'Slack enabled' });
      expect(await slackSwitch.getAttribute('aria-checked')).toBe('true');
      await slackSwitch.focus();
      await page.keyboard.press('Space');
      await expect.poll(() => slackSwitch.getAttribute('aria-checked')).toBe('false');
      const slack = await ok<{ module: { enabled: boolean } }>(tenantKey, '{ module(id: "slack") { enabled } }');
      expect(slack.module.enabled).toBe(false);
      await page.getByRole('status').getByText('Slack is disabled.').waitFor();

      // Set a credential: typed into a password field, stored, never shown again.
      const linear = row(page, 'data-module', 'linear');
      await linear.getByRole('button', { name: /^Set/ }).click();
      const typedSecret = `lin_api_${Date.now().toString(36)}placeholder`;
      const form = page.getByRole('form', { name: 'Credential of Linear' });
      expect(await form.getByLabel('Secret value').getAttribute('type')).toBe('password');
      expect(await form.getByLabel('Field name').inputValue()).toBe('token');
      // Typed as a person types, into the field the form focused; Enter submits.
      await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('cred-linear-value-0');
      await page.keyboard.type(typedSecret);
      await page.keyboard.press('Enter');
      await expect.poll(() => linear.innerText()).toContain('Stored (token)');
      // Focus is back on the row's button, now Replace.
      await expect.poll(() => page.evaluate(() => document.activeElement?.textContent)).toMatch(/^Replace/);
      expect(await pageHolds(page, typedSecret)).toBe(false);
      const creds = await ok<{ credentials: { moduleId: string; fields: string[] }[] }>(tenantKey, '{ credentials { moduleId fields } }');
      expect(creds.credentials.find((c) => c.moduleId === 'linear')?.fields).toEqual(['token']);

      // Delete a credential: two steps, both buttons.
      const slackRow = row(page, 'data-module', 'slack');
      await slackRow.getByRole('button', { name: 'Delete', exact: true }).click();
      await slackRow.getByRole('button', { name: "Delete Slack's credential" }).click();
      await expect.poll(() => slackRow.innerText()).toContain('None');
      expect((await ok<{ hasCredential: boolean }>(tenantKey, '{ hasCredential(moduleId: "slack") }')).hasCredential).toBe(false);

      // Create a key: its secret shown once, with a copy button; then revoke it.
      const keys = page.locator('#keys');
      await keys.getByLabel('Name', { exact: true }).fill('nightly-sync');
      await keys.getByRole('checkbox', { name: 'usage:read' }).check();
      await keys.getByRole('button', { name: 'Create key' }).click();
      const secretField = keys.getByLabel(/The secret of nightly-sync/);
      await secretField.waitFor();
      const secret = await secretField.inputValue();
      expect(secret).toMatch(/^tgk_[0-9A-Za-z]{49}$/);
      await keys.getByRole('button', { name: 'Copy secret' }).click();
      await page.getByRole('status').getByText('Copied to the clipboard.').waitFor();
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret);
      const viewer = await ok<{ viewer: { apiKey: { name: string }; scopes: string[] } }>(secret, '{ viewer { apiKey { name } scopes } }');
      expect(viewer.viewer).toEqual({ apiKey: { name: 'nightly-sync' }, scopes: ['modules:read', 'usage:read'] });
      // While it is shown the page holds it (the check sees input values), and once Done, nowhere.
      expect(await pageHolds(page, secret)).toBe(true);
      await keys.getByRole('button', { name: 'Done' }).click();
      expect(await pageHolds(page, secret)).toBe(false);
      const newKeyRow = keys.locator('tr', { hasText: 'nightly-sync' });
      await newKeyRow.getByRole('button', { name: 'Revoke', exact: true }).click();
      await newKeyRow.getByRole('button', { name: 'Revoke nightly-sync' }).click();
      await expect.poll(() => newKeyRow.innerText()).toContain('Revoked');
      expect((await api(secret, '{ viewer { scopes } }')).status).toBe(401);
      // The audit trail heard this tab's changes, and pages back with its cursor.
      const audit = page.locator('#audit');
      await audit.getByText('Key revoke').first().waitFor();
      expect(await audit.locator('tbody tr').count()).toBe(15);
      await audit.getByRole('button', { name: 'Older records' }).click();
      await expect.poll(() => audit.locator('tbody tr').count()).toBeGreaterThan(15);
      const seqs = (await audit.locator('tbody tr td:first-child').allInnerTexts()).map(Number);
      expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
      expect(new Set(seqs).size).toBe(seqs.length);

      // Another client reports a module's health: it shows without a reload.
      await ok(gateway.adminKey, 'mutation { reportModuleHealth(orgId: "acme-robotics", moduleId: "github", status: UNHEALTHY, message: "API rate limit exhausted (403 from api.github.com)") { id } }');
      const github = row(page, 'data-module', 'github');
      await expect.poll(() => github.innerText(), { timeout: 10_000 }).toContain('API rate limit exhausted');
      expect(await github.locator('.badge').first().innerText()).toBe('Unhealthy');
      // And a module installed by another client joins the list in place.
      await ok(tenantKey, 'mutation { installModule(input: { id: "notion", name: "Notion", version: "1.2.0" }) { id } }');
      await row(page, 'data-module', 'notion').waitFor({ timeout: 10_000 });
      expect(await page.evaluate(() => (globalThis as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);


      expect(await axeViolations(page, ['label', 'button-name', 'color-contrast', 'th-has-data-cells']), 'org view').toEqual([]);

      // The screenshot of the org view: docs/dashboard.png only when asked for, so runs leave the checkout clean.
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.mouse.move(0, 0);
      screenshotPath =
        process.env.TG_UPDATE_SCREENSHOT === '1' ? path.join(process.cwd(), 'docs', 'dashboard.png') : path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tg-dashboard-')), 'dashboard.png');
      fs.mkdirSync(path.dirname(screenshotPath), { recursive: true });
      await page.screenshot({ path: screenshotPath });

      // A reload of the tab signs in again from sessionStorage.
      await page.reload();
      await row(page, 'data-module', 'github').waitFor();
      expect(await page.getByLabel('API key', { exact: true }).count()).toBe(0);

      // Sign out: the key is forgotten, and a reload asks for it again.
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('API key', { exact: true }).waitFor();
      expect(await page.evaluate(() => JSON.stringify(sessionStorage))).not.toContain(tenantKey);
      await page.reload();
      await page.getByLabel('API key', { exact: true }).waitFor();
    });

    const png = fs.readFileSync(screenshotPath);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    // IHDR: width and height, big-endian, at bytes 16-23.
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([VIEWPORT.width, VIEWPORT.height]);
    if (process.env.TG_UPDATE_SCREENSHOT !== '1') fs.rmSync(path.dirname(screenshotPath), { recursive: true, force: true });
  });

  /**
   * A TCP relay in front of the gateway that the test can cut, as a network would: every
   * connection through it dropped, and new ones refused until it is mended.
   */
  async function relay(): Promise<{ origin: string; cut(): void; mend(): void; close(): Promise<void> }> {
    const target = new URL(gateway.origin);
    const sockets = new Set<net.Socket>();
    let broken = false;
    const server = net.createServer((client) => {
      if (broken) return void client.destroy();
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const socket of [client, upstream]) {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    return {
      origin: `http://127.0.0.1:${port}`,
      cut() {
        broken = true;
        for (const socket of sockets) socket.destroy();
      },
      mend() {
        broken = false;
      },
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }

  it('comes back after the stream breaks, and reads again what it missed', async () => {
    const network = await relay();
    // Chromium logs the requests the cut network failed (net::ERR_...): the only errors allowed.
    const run = await open((m) => /net::ERR_/.test(m.text()), network.origin);
    const { page } = run;
    try {
      await steps(run, async () => {
        await page.goto(`${network.origin}/dashboard`);
        await page.getByLabel('API key', { exact: true }).fill(tenantKey);
        await page.getByLabel('API key', { exact: true }).press('Enter');
        const jira = page.getByRole('switch', { name: 'Jira Cloud enabled' });
        await jira.waitFor();
        expect(await jira.getAttribute('aria-checked')).toBe('true');
        await page.locator('[data-live="live"]').waitFor();
        await page.evaluate(() => ((globalThis as unknown as { notReloaded: boolean }).notReloaded = true));

        network.cut();
        await page.locator('[data-live="offline"]').waitFor({ timeout: 10_000 });
        // A change while the page cannot hear: its event is lost to this page.
        await ok(tenantKey, 'mutation { disableModule(id: "jira") { id } }');
        network.mend();
        await page.locator('[data-live="live"]').waitFor({ timeout: 20_000 });
        await expect.poll(() => jira.getAttribute('aria-checked'), { timeout: 10_000 }).toBe('false');
        expect(await page.evaluate(() => (globalThis as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
      });
    } finally {
      await network.close();
      await ok(tenantKey, 'mutation { enableModule(id: "jira") { id } }');
    }
  });

  it('refuses a key that does not verify, keeps nothing of it, and shows where the focus is', async () => {
    // The gateway's 401 for the wrong key is logged by Chromium as an error: the one error allowed.
    const run = await open((m) => /status of 401/.test(m.text()) && m.location().url === gateway.server.url);
    const { page, context } = run;
    await steps(run, async () => {
      const wrong = `tgk_${'A'.repeat(49)}`;
      await signIn(page, wrong);
      await page.getByRole('alert').getByText('The API key is not valid').waitFor();
      expect(await page.getByLabel('API key', { exact: true }).getAttribute('aria-invalid')).toBe('true');
      const kept = await page.evaluate(() => JSON.stringify({ ...sessionStorage, ...localStorage }) + location.href);
      expect(kept).not.toContain(wrong);
      expect(await context.cookies()).toEqual([]);
      // Keyboard focus is visible: Tab from the field reaches the button, outlined.
      await page.getByLabel('API key', { exact: true }).focus();
      await page.keyboard.press('Tab');
      const focused = await page.evaluate(() => {
        const el = document.activeElement as HTMLElement;
        const style = getComputedStyle(el);
        return { text: el.textContent, outline: style.outlineStyle, width: style.outlineWidth };
      });
      expect(focused).toEqual({ text: 'Sign in', outline: 'solid', width: '3px' });
    });
    expect(run.allowedErrors).toHaveLength(1);
  });

  it('shows a missing scope on its panel, and the rest of the page works', async () => {
    const run = await open();
    const { page } = run;
    await steps(run, async () => {
      await signIn(page, narrowKey);
      await row(page, 'data-module', 'github').waitFor();
      await page.locator('#keys').getByText('This key lacks the keys:manage scope.').waitFor();
      await page.locator('#usage').getByText('This key lacks the usage:read scope.').waitFor();
      await page.locator('#audit').getByText('This key lacks the audit:read scope.').waitFor();
      // A change it may not make is refused with a message, and nothing changes.
      await page.getByRole('switch', { name: 'GitHub enabled' }).click();
      await page.getByRole('status').getByText('This key lacks the modules:write scope.').waitFor();
      expect(await page.getByRole('switch', { name: 'GitHub enabled' }).getAttribute('aria-checked')).toBe('true');
    });
  });

  it('signs an operator in: orgs, unhealthy modules live, suspend and resume', async () => {
    const run = await open();
    const { page } = run;
    await steps(run, async () => {
      await signIn(page, gateway.adminKey);
      await page.getByRole('heading', { level: 1, name: 'Operator view' }).waitFor();
      const acme = row(page, 'data-org', ORG);
      await acme.waitFor();
      await row(page, 'data-org', 'globex').waitFor();
      await row(page, 'data-org', 'default').waitFor();
      // This month's use: the seeded run units, against the quota.
      await expect.poll(() => acme.innerText()).toMatch(/\/ 50,000/);
      // The health report of the first case, and the seeded degraded one, across orgs.
      await row(page, 'data-unhealthy', `${ORG}/github`).waitFor();
      await row(page, 'data-unhealthy', `${ORG}/stripe`).waitFor();
      await page.locator('[data-live="live"]').waitFor();

      expect(await axeViolations(page, ['button-name', 'color-contrast', 'landmark-one-main']), 'operator view').toEqual([]);

      // Every org's health reports arrive live: one turning bad joins, one recovering leaves.
      await ok(gateway.adminKey, 'mutation { reportModuleHealth(orgId: "acme-robotics", moduleId: "jira", status: DEGRADED, message: "Slow search") { id } }');
      await row(page, 'data-unhealthy', `${ORG}/jira`).waitFor({ timeout: 10_000 });
      await ok(gateway.adminKey, 'mutation { reportModuleHealth(orgId: "acme-robotics", moduleId: "stripe", status: HEALTHY) { id } }');
      await row(page, 'data-unhealthy', `${ORG}/stripe`).waitFor({ state: 'detached', timeout: 10_000 });

      // Suspend: a reason, then the org's keys are refused.
      await acme.getByRole('button', { name: /^Suspend/ }).click();
      await page.getByLabel(/Why suspend Acme Robotics/).fill('Invoice 2026-11 unpaid');
      await page.getByRole('button', { name: 'Confirm: suspend Acme Robotics' }).click();
      await expect.poll(() => acme.innerText()).toContain('Suspended');
      expect(await acme.innerText()).toContain('Invoice 2026-11 unpaid');
      const refused = await api(tenantKey, '{ viewer { scopes } }');
      expect(refused.status).toBe(403);
      expect(refused.errors?.[0]?.extensions?.code).toBe('ORG_SUSPENDED');

      await acme.getByRole('button', { name: /^Resume/ }).click();
      await expect.poll(() => acme.innerText()).toContain('Active');
      expect((await api(tenantKey, '{ viewer { scopes } }')).status).toBe(200);

      // The admin key's own org is a view away.
      await page.getByRole('navigation', { name: 'Views' }).getByRole('button', { name: 'Org default' }).click();
      const modules = page.locator('#modules');
      await modules.getByText('Showing 20 of 23').waitFor();
      await modules.getByRole('button', { name: 'More modules' }).click();
      await modules.getByText('Showing 23 of 23').waitFor();
      expect(await modules.getByRole('button', { name: 'More modules' }).count()).toBe(0);
      const ids = await modules.locator('tbody tr[data-module]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-module')));
      expect(ids).toEqual(Array.from({ length: 23 }, (_, i) => `worker-${String(i + 1).padStart(2, '0')}`));
    });
  });
});
