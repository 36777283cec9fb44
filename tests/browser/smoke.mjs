// Real-browser smoke test for Plugboard.
//
// Starts the built server binary on a free loopback port with a throwaway data
// dir, then drives Debian's Chromium (via playwright-core, no bundled browser)
// through sign-up, log-in, inviting a member, accepting the invite in a fresh
// browser context, connecting and syncing the sandbox, the workspace time zone
// (checked against the browser's own clock for Berlin), confirming a
// destructive action with and without JavaScript, the nav on a 404, the
// Data Hub dashboard's KPIs against sums computed here from the sandbox's own
// data API (range and scope switched, the explorer's CSV compared), the
// projects and people lists against the JSON API and the projects CSV, a
// sync rule saved in the Integrations Hub, no
// horizontal overflow at 390 px on every page, and no console errors.
//
//   apt-get install -y chromium          # when /usr/bin/chromium is missing
//   npm ci --prefix tests/browser
//   node tests/browser/smoke.mjs         # PLUGBOARD_BIN=... to pick the binary
//
// Exit code 0 and "browser: N passed, 0 failed" on success; exit code 1 and
// "browser: X passed, Y failed" otherwise (Y counts the failed step and the
// steps after it, which were not run).

import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const ARTIFACTS = path.join(HERE, 'artifacts');
const BIN = process.env.PLUGBOARD_BIN || '/work/.cache/plugboard-target/debug/plugboard';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const TOTAL_BUDGET_MS = 180_000;
const HEALTH_TIMEOUT_MS = 30_000;
const ACTION_TIMEOUT_MS = 10_000;
const NAV_TIMEOUT_MS = 15_000;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const STEPS = [
  'server starts and /health is 200',
  'sign up a new organization',
  'log out, wrong password, log in',
  'invite a member from /settings/members',
  'accept the invite in a fresh browser context',
  'connect the sandbox from the Data Hub, approve, pick an account, test, sync now',
  'mobile viewport has no horizontal overflow',
  'set the workspace time zone; times are shown in it',
  'revoke a key: a dialog with JavaScript, a confirmation page without',
  'a signed-in 404 page keeps the nav',
  "the dashboard's KPIs are the sandbox's own sums; range and scope change them; the explorer CSV matches",
  'projects and people from the nav match the API; the projects CSV downloads',
  'the Jobs page lists the sandbox sync as succeeded; its job page shows the counts',
  'the Integrations Hub from the nav: the sandbox, its projects, a rule with an interval saved',
  'a workspace connect link made on the sandbox page: its QR code, opened, approved, the connected page',
  'Settings from the nav, then the audit log filtered by an action seen earlier',
  'a sync the sandbox refuses shows as failed on its card, linking to the failed job',
  "the projects' Sync controls tab shows a refused sync as failed; Retry, clicked, succeeds",
  'no page overflows at 390 px',
  'no console errors or CSP violations',
];

class Expectation extends Error {}
function expect(cond, message) {
  if (!cond) throw new Expectation(message);
}

const run = Date.now().toString(36);
const ORG = `Smoke Org ${run}`;
const OWNER = { name: 'Smoke Owner', email: `owner-${run}@example.com`, password: 'correct horse battery' };
// The sandbox's OAuth client, so the test can read the sandbox's data API
// itself (client credentials) and check the dashboard against it.
const SANDBOX_CLIENT = { id: `smoke-sandbox-${run}`, secret: `smoke-sandbox-secret-${run}` };
const SANDBOX_COMPANY = 'acme';
const ZONE = 'Europe/Berlin';
const FRIEND = { name: 'Smoke Friend', email: 'friend@example.com', password: 'another long passphrase' };

let tmpRoot;
let passed = 0;
let server;
let serverLog = '';
const contexts = [];
// Console errors and uncaught exceptions (CSP violations show up here too).
const consoleErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function startServer(port) {
  const dataDir = path.join(tmpRoot, 'data');
  await mkdir(dataDir, { recursive: true });
  const env = { ...process.env };
  delete env.DATABASE_URL;
  delete env.PLUGBOARD_DATABASE_URL;
  Object.assign(env, {
    PLUGBOARD_DATA_DIR: dataDir,
    PLUGBOARD_PROVIDERS_DIR: path.join(REPO, 'providers'),
    PORT: String(port),
    PLUGBOARD_HOST: '127.0.0.1',
    PLUGBOARD_LOG_LEVEL: 'warn',
    PLUGBOARD_SANDBOX_CLIENT_ID: SANDBOX_CLIENT.id,
    PLUGBOARD_SANDBOX_CLIENT_SECRET: SANDBOX_CLIENT.secret,
    // Values that stay put between reads, so sums can be compared.
    PLUGBOARD_SANDBOX_REVISIONS: 'false',
  });
  server = spawn(BIN, [], { cwd: tmpRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const keep = (chunk) => {
    serverLog = (serverLog + chunk.toString()).slice(-8000);
  };
  server.stdout.on('data', keep);
  server.stderr.on('data', keep);
  let exited = null;
  let spawnError = null;
  server.on('error', (e) => (spawnError = e));
  server.on('exit', (code, signal) => (exited = { code, signal }));

  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  let last = 'no response';
  while (Date.now() < deadline) {
    if (spawnError) throw new Expectation(`could not start ${BIN}: ${spawnError.message}`);
    if (exited) {
      throw new Expectation(
        `server exited early (code ${exited.code}, signal ${exited.signal}); output:\n${serverLog}`,
      );
    }
    try {
      const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return base;
      last = `status ${res.status}`;
    } catch (e) {
      last = e.cause?.code || e.message;
    }
    await sleep(200);
  }
  throw new Expectation(`GET /health did not return 200 within 30 s (last: ${last}); output:\n${serverLog}`);
}

async function stopServer() {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const gone = new Promise((r) => server.once('exit', r));
  server.kill('SIGTERM');
  const t = await Promise.race([gone.then(() => 'exited'), sleep(5000).then(() => 'timeout')]);
  if (t === 'timeout') {
    server.kill('SIGKILL');
    await Promise.race([gone, sleep(2000)]);
  }
}

const DELIBERATE_ERRORS = [
  ['401', '/login'],
  ['422', '/settings/workspace'],
  ['404', '/no-such-page'],
  // A used connect link, opened again on purpose.
  ['404', /^\/connect\/[A-Za-z0-9_-]+$/],
];
function isDeliberateErrorStatus(message) {
  let pathname = '';
  try {
    pathname = new URL(message.location().url).pathname;
  } catch {
    return false;
  }
  return DELIBERATE_ERRORS.some(
    ([status, p]) =>
      (p instanceof RegExp ? p.test(pathname) : pathname === p) && message.text().includes(`status of ${status}`),
  );
}

async function newContext(name, viewport = { width: 1280, height: 800 }, javaScriptEnabled = true) {
  const profile = await mkdtemp(path.join(tmpRoot, `${name}-profile-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    javaScriptEnabled,
    timeout: 30_000,
  });
  const watch = (page) => {
    page.on('console', (m) => {
      // The deliberate error answers (a wrong password, an unknown zone,
      // a missing page) log their status; nothing else may.
      if (m.type() === 'error' && !isDeliberateErrorStatus(m)) {
        consoleErrors.push(`${name}: ${m.text()} (${m.location().url})`);
      }
    });
    page.on('pageerror', (e) => consoleErrors.push(`${name}: ${e.message}`));
  };
  context.pages().forEach(watch);
  context.on('page', watch);
  contexts.push(context);
  context.setDefaultTimeout(ACTION_TIMEOUT_MS);
  context.setDefaultNavigationTimeout(NAV_TIMEOUT_MS);
  const page = context.pages()[0] ?? (await context.newPage());
  return { context, page };
}

function pathOf(page) {
  const u = new URL(page.url());
  return u.pathname + u.search;
}

async function waitForPath(page, pathname, what) {
  try {
    await page.waitForURL((u) => u.pathname === pathname, { timeout: NAV_TIMEOUT_MS });
  } catch {
    throw new Expectation(`${what}: expected to be on ${pathname}, but on ${pathOf(page)}`);
  }
}

async function expectText(locator, text, what) {
  try {
    await locator.first().waitFor({ state: 'visible' });
  } catch {
    throw new Expectation(`${what}: element not visible`);
  }
  const got = (await locator.first().innerText()).trim();
  expect(got.includes(text), `${what}: expected it to contain ${JSON.stringify(text)}, got ${JSON.stringify(got)}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
}

// Waits until none of the sandbox's sync jobs is queued or running.
async function waitForSandboxJobs(page, base) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const jobs = await (await page.request.get(`${base}/api/integrations/sandbox/jobs`)).json();
    const open = jobs.filter((j) => !['succeeded', 'failed', 'cancelled'].includes(j.status));
    if (open.length === 0) {
      const failed = jobs.filter((j) => j.status === 'failed' && j.object === 'daily_metrics');
      expect(failed.length === 0, `metric sync failed: ${JSON.stringify(failed.map((j) => j.error))}`);
      return;
    }
    expect(Date.now() < deadline, `sync jobs still running: ${JSON.stringify(open.map((j) => [j.object, j.status]))}`);
    await sleep(300);
  }
}

// The sandbox's own daily rows and currencies of `accounts`, read through
// its OAuth token endpoint and data API (not through Plugboard's store).
async function sandboxData(base, accounts) {
  const tokenRes = await fetch(`${base}/sandbox/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: SANDBOX_CLIENT.id, client_secret: SANDBOX_CLIENT.secret }),
  });
  expect(tokenRes.status === 200, `sandbox token: HTTP ${tokenRes.status} ${await tokenRes.clone().text()}`);
  const { access_token: token } = await tokenRes.json();
  const get = async (p) => {
    const res = await fetch(`${base}/sandbox${p}`, { headers: { authorization: `Bearer ${token}`, 'x-sandbox-company': SANDBOX_COMPANY } });
    expect(res.status === 200, `sandbox ${p}: HTTP ${res.status}`);
    return res.json();
  };
  const currency = {};
  for (const p of (await get('/api/properties')).properties) currency[p.id] = p.currency;
  const rows = {};
  for (const id of accounts) {
    rows[id] = [];
    let cursor = null;
    for (let i = 0; i < 100; i++) {
      const page = await get(`/api/properties/${encodeURIComponent(id)}/daily-metrics?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      rows[id].push(...page.rows);
      cursor = page.next_cursor;
      if (!cursor) break;
    }
  }
  return { currency, rows };
}

// `YYYY-MM-DD` of `date` in `zone`.
function dayIn(zone, date) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' })
      .formatToParts(date).map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day}`;
}

function addDays(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

// One RFC 4180 record (no line breaks inside cells in these files).
function parseCsvLine(line) {
  const cells = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      cells.push(cell);
      cell = '';
    } else cell += c;
  }
  cells.push(cell);
  return cells;
}

async function main() {
  tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'plugboard-browser-'));
  await mkdir(ARTIFACTS, { recursive: true });
  let base;
  let owner;
  let inviteLink;
  let jobPath;
  let projectPath;

  const steps = [
    // 1
    async () => {
      const port = await freePort();
      base = await startServer(port);
    },
    // 2
    async () => {
      owner = await newContext('owner');
      const { page } = owner;
      await page.goto(`${base}/`);
      expect(
        pathOf(page) === '/login?next=%2F',
        `GET / while signed out: expected redirect to /login?next=%2F, got ${pathOf(page)}`,
      );
      await page.getByRole('link', { name: 'Create an account' }).click();
      await waitForPath(page, '/signup', 'after clicking "Create an account"');
      await page.getByLabel('Name', { exact: true }).fill(OWNER.name);
      await page.getByLabel('Email', { exact: true }).fill(OWNER.email);
      await page.getByLabel('Password').fill(OWNER.password);
      await page.getByLabel('Organization', { exact: true }).fill(ORG);
      await page.getByRole('button', { name: 'Sign up' }).click();
      await waitForPath(page, '/', 'after signing up');
      await expectText(page.locator('[data-testid="current-workspace"]'), ORG, 'current workspace after sign-up');
      await expectText(page.locator('.flash'), 'Welcome to Plugboard.', 'flash after sign-up');
      await expectText(page.locator('[data-testid="members"]'), OWNER.email, 'members list after sign-up');
      await shot(page, 'home.png');
    },
    // 3
    async () => {
      const { page } = owner;
      await page.getByRole('button', { name: 'Log out' }).click();
      await waitForPath(page, '/login', 'after clicking "Log out"');
      await page.getByLabel('Email', { exact: true }).fill(OWNER.email);
      await page.getByLabel('Password', { exact: true }).fill('definitely-not-it');
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.waitForLoadState('load');
      await expectText(page.locator('body'), 'invalid email or password', 'log-in with a wrong password');
      expect(
        new URL(page.url()).pathname === '/login',
        `wrong password: expected to stay on /login, got ${pathOf(page)}`,
      );
      await page.getByLabel('Email', { exact: true }).fill(OWNER.email);
      await page.getByLabel('Password', { exact: true }).fill(OWNER.password);
      await page.getByRole('button', { name: 'Log in' }).click();
      await waitForPath(page, '/', 'after logging in');
      await expectText(page.locator('[data-testid="current-workspace"]'), ORG, 'current workspace after log-in');
    },
    // 4
    async () => {
      const { page } = owner;
      await page.goto(`${base}/settings/members`);
      await waitForPath(page, '/settings/members', 'opening /settings/members');
      const form = page
        .locator('section', { has: page.getByRole('heading', { name: 'Invite by email' }) })
        .locator('form');
      expect((await form.count()) === 1, `"Invite by email" form: expected 1, found ${await form.count()}`);
      await form.getByLabel('Email').fill(FRIEND.email);
      await form.getByLabel('Role').selectOption('member');
      await form.getByRole('button', { name: 'Invite', exact: true }).click();
      await page.waitForLoadState('load');
      const link = page.locator('[data-testid="invite-link"]');
      try {
        await link.waitFor({ state: 'visible' });
      } catch {
        const flash = await page.locator('.flash, .error').allInnerTexts();
        throw new Expectation(`no invite link after adding ${FRIEND.email} (flash/error: ${JSON.stringify(flash)})`);
      }
      inviteLink = await link.inputValue();
      expect(inviteLink.includes('/invites/'), `invite link should contain /invites/, got ${JSON.stringify(inviteLink)}`);
      await shot(page, 'members.png');
    },
    // 5
    async () => {
      const { page } = await newContext('friend');
      await page.goto(new URL(inviteLink, base).href);
      await expectText(page.locator('h1'), 'Join', 'invite page heading');
      await page.getByRole('link', { name: 'Create an account' }).click();
      await waitForPath(page, '/signup', 'after clicking "Create an account" on the invite');
      const u = new URL(page.url());
      expect(u.searchParams.get('invite'), `signup from invite: expected ?invite=..., got ${pathOf(page)}`);
      const email = await page.getByLabel('Email', { exact: true }).inputValue();
      expect(email === FRIEND.email, `invite signup: email should be prefilled with ${FRIEND.email}, got ${JSON.stringify(email)}`);
      expect(
        (await page.getByLabel('Organization', { exact: true }).count()) === 0,
        'invite signup should not ask for an organization',
      );
      await page.getByLabel('Name', { exact: true }).fill(FRIEND.name);
      await page.getByLabel('Password').fill(FRIEND.password);
      await page.getByRole('button', { name: 'Sign up' }).click();
      await waitForPath(page, '/', 'after signing up from the invite');
      await expectText(page.locator('[data-testid="current-workspace"]'), ORG, 'invitee current workspace');
    },
    // 6: the connections journey — Connect, Approve at the provider, pick an account
    async () => {
      const { page } = owner;
      await page.goto(`${base}/data/connections`);
      await page.locator('[data-testid="connect-sandbox"]').click();
      await page.waitForURL((u) => u.pathname === '/sandbox/oauth/authorize', { timeout: NAV_TIMEOUT_MS });
      await page.getByRole('button', { name: 'Approve' }).click();
      await waitForPath(page, '/data/sandbox/accounts', 'after approving at the sandbox');
      // The chooser's search filters as one types; "select all" ticks what is shown.
      const choices = page.locator('[data-testid="accounts-form"] [data-account-choice]');
      const total = await choices.count();
      const search = page.locator('[data-testid="account-search"]');
      await search.fill('no account is called this');
      expect((await choices.filter({ visible: true }).count()) === 0, 'a search matching nothing hides every account');
      await search.fill('');
      expect((await choices.filter({ visible: true }).count()) === total, 'clearing the search shows every account');
      await page.locator('[data-testid="select-all"]').check();
      expect(
        (await page.locator('[data-testid="accounts-form"] input[name="account_id"]:checked').count()) === total,
        'select all ticks every account shown',
      );
      await page.locator('[data-testid="select-all"]').uncheck();
      // Two accounts, so the dashboard's scopes differ (step 11); chosen
      // before the first sync, which reads their whole history.
      await page.locator('[data-testid="accounts-form"] input[name="account_id"]').nth(0).check();
      await page.locator('[data-testid="accounts-form"] input[name="account_id"]').nth(1).check();
      await page.getByRole('button', { name: 'Save' }).click();
      await waitForPath(page, '/data/connections', 'after choosing an account');
      await expectText(page.locator('[data-testid="status-sandbox"]'), 'CONNECTED', 'sandbox card status');
      await page.locator('[data-testid="card-sandbox"]').getByRole('button', { name: 'Test' }).click();
      await waitForPath(page, '/data/connections', 'after testing');
      await expectText(page.locator('.flash'), 'Test passed', 'test flash');
      await page.locator('[data-testid="sync-sandbox"]').click();
      await waitForPath(page, '/data/connections', 'after Sync now');
      await expectText(page.locator('.flash'), 'sync job(s) queued', 'sync flash');
      await shot(page, 'data-hub.png');
    },
    // 7
    async () => {
      const { page } = owner;
      await page.setViewportSize({ width: 390, height: 844 });
      await page.goto(`${base}/`);
      await waitForPath(page, '/', 'mobile home page');
      const m = await page.evaluate(() => ({
        scrollWidth: document.documentElement.scrollWidth,
        innerWidth: window.innerWidth,
      }));
      await shot(page, 'mobile.png');
      expect(
        m.scrollWidth <= m.innerWidth + 1,
        `mobile (390x844) home page overflows horizontally: scrollWidth ${m.scrollWidth} > innerWidth ${m.innerWidth}`,
      );
    },
    // 8: the zone is set in the form and every time then carries it
    async () => {
      const { page } = owner;
      await page.setViewportSize({ width: 1280, height: 800 });
      await page.goto(`${base}/settings/workspace`);
      const field = page.getByLabel('Time zone', { exact: true });
      await field.fill('Mars/Olympus');
      await page.getByRole('button', { name: 'Save' }).click();
      await page.waitForLoadState('load');
      await expectText(page.locator('body'), 'time zone', 'error for an unknown zone');
      expect(
        (await page.getByLabel('Time zone', { exact: true }).inputValue()) === 'Mars/Olympus',
        'the unknown zone typed should be kept in the field',
      );
      await page.getByLabel('Time zone', { exact: true }).fill('Europe/Berlin');
      await page.getByRole('button', { name: 'Save' }).click();
      await waitForPath(page, '/settings/workspace', 'after saving the zone');
      const shown = (await page.locator('[data-testid="zone-now"]').innerText()).trim();
      expect(shown.endsWith('Europe/Berlin'), `"now" should name Europe/Berlin, got ${JSON.stringify(shown)}`);
      // Independently: what the clock says in Berlin, this minute or the last.
      const berlin = (d) => {
        const parts = Object.fromEntries(
          new Intl.DateTimeFormat('en-CA', {
            timeZone: 'Europe/Berlin', year: 'numeric', month: '2-digit', day: '2-digit',
            hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
          }).formatToParts(d).map((p) => [p.type, p.value]),
        );
        return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
      };
      const now = Date.now();
      const accepted = [berlin(new Date(now)), berlin(new Date(now - 60_000))];
      expect(
        accepted.some((t) => shown.startsWith(t)),
        `"now" in Berlin: expected one of ${JSON.stringify(accepted)}, page shows ${JSON.stringify(shown)}`,
      );
      await page.goto(`${base}/data/connections`);
      await expectText(page.locator('[data-testid="last-sync-sandbox"]'), 'Europe/Berlin', 'last sync time on the Data Hub');
    },
    // 9: a destructive action asks first, with and without JavaScript
    async () => {
      const { page } = owner;
      const createKey = async (p, name) => {
        await p.goto(`${base}/settings/keys`);
        await p.getByLabel('Name', { exact: true }).fill(name);
        await p.locator('input[name="scope"][value="tokens:read"]').check();
        await p.getByRole('button', { name: 'Create key' }).click();
        await p.locator('[data-testid="new-key"]').waitFor({ state: 'visible' });
      };
      const rowOf = (p, name) => p.locator('[data-testid="key-row"]', { hasText: name });
      await createKey(page, 'smoke-js');
      await rowOf(page, 'smoke-js').getByRole('button', { name: 'Revoke' }).click();
      const dialog = page.locator('[data-testid="confirm-dialog"]');
      await dialog.waitFor({ state: 'visible' });
      await dialog.getByRole('button', { name: 'Cancel' }).click();
      await page.goto(`${base}/settings/keys`);
      expect((await rowOf(page, 'smoke-js').innerText()).includes('REVOKED') === false, 'cancelling the dialog must revoke nothing');
      await rowOf(page, 'smoke-js').getByRole('button', { name: 'Revoke' }).click();
      await dialog.getByRole('button', { name: 'Revoke' }).click();
      await waitForPath(page, '/settings/keys', 'after confirming in the dialog');
      await expectText(rowOf(page, 'smoke-js'), 'REVOKED', 'key revoked through the dialog');

      // The same session without JavaScript: the server asks on a page.
      const nojs = await newContext('nojs', { width: 1280, height: 800 }, false);
      await nojs.context.addCookies(await owner.context.cookies());
      const p = nojs.page;
      await createKey(p, 'smoke-nojs');
      await rowOf(p, 'smoke-nojs').getByRole('button', { name: 'Revoke' }).click();
      await p.locator('[data-testid="confirm"]').waitFor({ state: 'visible' });
      await p.locator('[data-testid="confirm-cancel"]').click();
      await waitForPath(p, '/settings/keys', 'after cancelling on the confirmation page');
      expect((await rowOf(p, 'smoke-nojs').innerText()).includes('REVOKED') === false, 'cancelling must revoke nothing');
      await rowOf(p, 'smoke-nojs').getByRole('button', { name: 'Revoke' }).click();
      await p.locator('[data-testid="confirm-yes"]').click();
      await waitForPath(p, '/settings/keys', 'after confirming on the page');
      await expectText(rowOf(p, 'smoke-nojs'), 'REVOKED', 'key revoked through the confirmation page');
    },
    // 10
    async () => {
      const { page } = owner;
      const res = await page.goto(`${base}/no-such-page`);
      expect(res.status() === 404, `expected 404, got ${res.status()}`);
      await expectText(page.locator('[data-testid="current-workspace"]'), ORG, 'nav on the 404 page');
      expect((await page.title()).length > 0, 'the 404 page has a title');
    },
    // 11: the dashboard against the sandbox's own numbers
    async () => {
      const { page } = owner;
      await page.setViewportSize({ width: 1280, height: 800 });
      // The two accounts chosen in step 6, once their sync (Sync now) is done.
      await page.goto(`${base}/data/sandbox/accounts`);
      const accounts = await page
        .locator('[data-testid="accounts-form"] input[name="account_id"]:checked')
        .evaluateAll((els) => els.map((e) => e.value));
      expect(accounts.length === 2, `two accounts chosen in step 6, found ${JSON.stringify(accounts)}`);
      await waitForSandboxJobs(page, base);

      // The sandbox's data, read here with a token of its own.
      const sandbox = await sandboxData(base, accounts);
      const today = dayIn(ZONE, new Date());
      const to = addDays(today, -1);
      const from28 = addDays(to, -27);
      const from7 = addDays(to, -6);
      const sum = (ids, key, from) =>
        ids.flatMap((id) => sandbox.rows[id]).filter((r) => r.date >= from && r.date <= to).reduce((a, r) => a + r[key], 0);
      const close = (a, b) => Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b));
      const tile = (key) =>
        page.locator(`[data-testid="kpi-${key}"] .kpi-value`).evaluateAll((els) =>
          els.map((e) => ({ value: Number(e.dataset.value), currency: e.dataset.currency })));
      const expectTiles = async (ids, from, what) => {
        for (const key of ['sessions', 'conversions', 'clicks']) {
          const shown = await tile(key);
          const source = key === 'clicks' ? 'ad_clicks' : key;
          const want = sum(ids, source, from);
          expect(shown.length === 1 && close(shown[0].value, want), `${what}: ${key} shows ${JSON.stringify(shown)}, the sandbox sums ${want}`);
        }
        // Amounts: one value per currency, never added across them.
        const revenue = await tile('revenue');
        const currencies = [...new Set(ids.map((id) => sandbox.currency[id]))];
        expect(revenue.length === currencies.length, `${what}: revenue parts ${JSON.stringify(revenue)} for ${JSON.stringify(currencies)}`);
        for (const c of currencies) {
          const want = sum(ids.filter((id) => sandbox.currency[id] === c), 'revenue', from);
          const got = revenue.find((r) => r.currency === c);
          expect(got && close(got.value, want), `${what}: revenue in ${c} shows ${JSON.stringify(got)}, the sandbox sums ${want}`);
        }
        return (await tile('sessions'))[0].value;
      };

      await page.locator('nav.topnav').getByRole('link', { name: 'Data Hub', exact: true }).click();
      await waitForPath(page, '/data', 'after clicking Data Hub in the nav');
      await expectText(page.locator('[data-testid="period"]'), `${from28} – ${to}`, 'the last 28 days end yesterday');
      const all28 = await expectTiles(accounts, from28, 'last 28 days, all accounts');
      expect((await page.locator('[data-testid="line-chart"] svg circle title').count()) > 0, 'the line chart has tooltips');
      expect((await page.locator('[data-testid="line-chart"] path[stroke-dasharray]').count()) > 0, 'the comparison is dashed');
      await shot(page, 'dashboard.png');

      // Another range through the form (no script needed): numbers change.
      await page.locator('[data-testid="range"]').selectOption('7d');
      await page.locator('[data-testid="apply"]').click();
      await page.waitForURL((u) => u.pathname === '/data' && u.searchParams.get('range') === '7d');
      const all7 = await expectTiles(accounts, from7, 'last 7 days, all accounts');
      expect(all7 !== all28, `sessions didn't change with the range (${all7})`);

      // One account: its own sums, and the view is in the URL.
      await page.locator('[data-testid="scope"]').selectOption(`a:sandbox:${accounts[0]}`);
      await page.locator('[data-testid="apply"]').click();
      await page.waitForURL((u) => u.searchParams.get('scope') === `a:sandbox:${accounts[0]}`);
      const one7 = await expectTiles([accounts[0]], from7, `last 7 days, ${accounts[0]}`);
      expect(one7 !== all7, `sessions didn't change with the scope (${one7})`);
      const bookmark = page.url();
      await page.goto(`${base}/`);
      await page.goto(bookmark);
      await expectTiles([accounts[0]], from7, 'the bookmarked view');

      // The explorer's CSV: every day and account, as the sandbox has them.
      const query = `metrics=sessions,revenue&groupBy=account&grain=day&from=${from28}&to=${to}`;
      await page.goto(`${base}/data/metrics?${query}`);
      await page.locator('[data-testid="explorer-table"]').waitFor({ state: 'visible' });
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('[data-testid="csv"]').click()]);
      const lines = (await readFile(await download.path(), 'utf8')).split('\r\n').filter((l) => l.length > 0).map(parseCsvLine);
      const head = lines[0];
      const col = (name) => head.indexOf(name);
      expect(['period', 'account', 'sessions', 'revenue', 'currency'].every((c) => col(c) >= 0), `CSV header ${JSON.stringify(head)}`);
      expect(lines.length - 1 === 28 * accounts.length, `CSV has ${lines.length - 1} rows for 28 days × ${accounts.length} accounts`);
      for (const cells of lines.slice(1)) {
        const [day, account] = [cells[col('period')], cells[col('account')]];
        const row = sandbox.rows[account]?.find((r) => r.date === day);
        expect(row, `CSV row ${JSON.stringify(cells)} is not in the sandbox`);
        expect(Number(cells[col('sessions')]) === row.sessions, `CSV sessions of ${account} on ${day}: ${cells[col('sessions')]} vs ${row.sessions}`);
        expect(close(Number(cells[col('revenue')]), row.revenue), `CSV revenue of ${account} on ${day}: ${cells[col('revenue')]} vs ${row.revenue}`);
        expect(cells[col('currency')] === sandbox.currency[account], `CSV currency of ${account}: ${cells[col('currency')]}`);
      }
      await shot(page, 'metrics.png');
    },
    // 11: the synced projects and people, reached from the nav
    async () => {
      const { page } = owner;
      await page.setViewportSize({ width: 1280, height: 800 });
      // Sync now (step 6) queued every object; wait for them to finish.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const jobs = await (await page.request.get(`${base}/api/integrations/sandbox/jobs`)).json();
        const open = jobs.filter((j) => !['succeeded', 'failed', 'cancelled'].includes(j.status));
        if (open.length === 0) {
          const failed = jobs.filter((j) => j.status !== 'succeeded' && ['projects', 'people'].includes(j.object));
          expect(failed.length === 0, `sync jobs failed: ${JSON.stringify(failed.map((j) => [j.object, j.error]))}`);
          break;
        }
        expect(Date.now() < deadline, `sync jobs still running: ${JSON.stringify(open.map((j) => [j.object, j.status]))}`);
        await sleep(300);
      }
      // Synced records become projects and people when mapped (the
      // Integrations Hub's "Re-apply mappings").
      for (const object of ['projects', 'people']) {
        const res = await page.request.post(`${base}/api/integrations/sandbox/${object}/apply`, { data: { conflictPolicy: 'auto_create' } });
        expect(res.status() === 200, `apply ${object}: HTTP ${res.status()} ${await res.text()}`);
      }
      for (const [label, pathname, api] of [['Projects', '/data/projects', '/api/projects'], ['People', '/data/people', '/api/people']]) {
        await page.locator('nav.topnav').getByRole('link', { name: label, exact: true }).click();
        await waitForPath(page, pathname, `after clicking ${label} in the nav`);
        const listed = await (await page.request.get(`${base}${api}`)).json();
        expect(listed.length > 0, `${api} is empty after the sync`);
        await expectText(page.locator('[data-testid="count"]'), `${listed.length} `, `${label} count`);
        const count = (await page.locator('[data-testid="count"]').innerText()).trim();
        expect(count.startsWith(`${listed.length} `), `${label}: the page says ${JSON.stringify(count)}, the API lists ${listed.length}`);
        const rows = await page.locator('[data-testid^="row-"]').count();
        expect(rows === Math.min(listed.length, 50), `${label}: ${rows} rows on the first page for ${listed.length}`);
        await expectText(page.locator('[data-testid="rows"]'), listed[0].name, `${label}: the first by name is listed`);
        if (label === 'Projects') {
          projectPath = await page.locator('[data-testid="rows"] a').first().getAttribute('href');
          const [download] = await Promise.all([
            page.waitForEvent('download'),
            page.locator('[data-testid="csv"]').click(),
          ]);
          const file = await download.path();
          const text = await readFile(file, 'utf8');
          const lines = text.split('\r\n').filter((l) => l.length > 0);
          expect(
            lines[0].startsWith('id,number,source_number,name,source_name,client_name,source_client_name,status,source_status'),
            `projects CSV header: ${JSON.stringify(lines[0])}`,
          );
          expect(lines.length === listed.length + 1, `projects CSV: ${lines.length - 1} rows for ${listed.length} projects`);
          expect(download.suggestedFilename() === 'projects.csv', `CSV named ${download.suggestedFilename()}`);
          await shot(page, 'projects.png');
        }
      }
    },
    // 12: job history, reached from the nav, and one job's page
    async () => {
      const { page } = owner;
      await page.goto(`${base}/`);
      await page.locator('nav.topnav').getByRole('link', { name: 'Jobs', exact: true }).click();
      await waitForPath(page, '/data/jobs', 'after clicking Jobs in the nav');
      const row = page.locator('[data-testid="job-row"][data-provider="sandbox"]', {
        has: page.locator('[data-testid="job-row-status"]', { hasText: 'succeeded' }),
      });
      // The sync from step 6 may still be running: reload until it is done.
      const deadline = Date.now() + 30_000;
      while ((await row.count()) === 0) {
        const statuses = await page.locator('[data-testid="job-row-status"]').allInnerTexts();
        expect(Date.now() < deadline, `no succeeded sandbox job listed; statuses: ${JSON.stringify(statuses)}`);
        await sleep(500);
        await page.reload();
      }
      await shot(page, 'jobs.png');
      await row.first().locator('[data-testid="job-link"]').click();
      await page.waitForURL((u) => /^\/data\/jobs\/[0-9a-f-]{36}$/.test(u.pathname), { timeout: NAV_TIMEOUT_MS });
      jobPath = new URL(page.url()).pathname;
      await expectText(page.locator('[data-testid="job-status"]'), 'succeeded', 'job page status');
      const fetched = (await page.locator('[data-testid="job-count-fetched"]').innerText()).trim();
      expect(/^[0-9]+$/.test(fetched) && Number(fetched) > 0, `fetched count should be a positive number, got ${JSON.stringify(fetched)}`);
      const lines = await page.locator('[data-testid="log-line"]').allInnerTexts();
      const last = lines.at(-1) || '';
      expect(last.includes(`done: `) && last.includes(`fetched ${fetched}`), `the log's last line should state the counts (fetched ${fetched}), got ${JSON.stringify(last)}`);
      await expectText(page.locator('[data-testid="job-duration"]'), ' s', 'job duration');
      await expectText(page.locator('[data-testid="job-started"]'), 'Europe/Berlin', 'job start time in the workspace zone');
    },
    // 12: the Integrations Hub, by clicking
    async () => {
      const { page } = owner;
      await page.goto(`${base}/`);
      await page.locator('nav.topnav').getByRole('link', { name: 'Integrations', exact: true }).click();
      await waitForPath(page, '/integrations', 'after clicking Integrations in the nav');
      await shot(page, 'integrations.png');
      await expectText(page.locator('[data-testid="provider-status-sandbox"]'), 'Connected', 'sandbox tile status');
      await page.locator('[data-testid="provider-sandbox"] h2 a').click();
      await waitForPath(page, '/integrations/sandbox', 'after opening the sandbox tile');
      await expectText(page.locator('[data-testid="connections"]'), 'CONNECTED', 'sandbox connection status');
      await shot(page, 'integrations-sandbox.png');
      await page.locator('[data-testid="open-object-projects"]').click();
      await waitForPath(page, '/integrations/sandbox/projects', 'after opening the projects object');
      const form = page.locator('[data-testid="rule-form"]');
      await form.getByRole('radio', { name: 'Every N minutes' }).check();
      await form.locator('input[name="/interval/minutes"]').fill('30');
      await form.getByRole('button', { name: 'Save rule' }).click();
      await waitForPath(page, '/integrations/sandbox/projects', 'after saving the rule');
      await page.waitForLoadState('load');
      const refused = await page.locator('.field-error, p.error').allInnerTexts();
      expect(refused.length === 0, `the rule was refused: ${JSON.stringify(refused)}`);
      await expectText(page.locator('.flash'), 'Rule saved', 'rule saved flash');
      await expectText(page.locator('[data-testid="revision"]'), 'Revision 1', 'saved revision');
      const minutes = await page.locator('input[name="/interval/minutes"]').inputValue();
      expect(minutes === '30', `the saved interval should read 30 minutes, got ${JSON.stringify(minutes)}`);
      await shot(page, 'integrations-rule.png');
    },
    // 13: a connect link, by clicking: made on the provider page (URL and
    // QR code shown once), opened, approved at the sandbox, "connected".
    async () => {
      const { page } = owner;
      await page.setViewportSize({ width: 1280, height: 800 });
      await page.goto(`${base}/integrations/sandbox`);
      const form = page.locator('[data-testid="connect-link-form"]');
      await form.getByLabel('For').selectOption('workspace');
      await form.getByRole('button', { name: 'Create link' }).click();
      await page.waitForLoadState('load');
      const qr = page.locator('[data-testid="connect-link-qr"] svg');
      expect((await qr.count()) === 1, 'the new link should have its QR code, an inline SVG');
      const box = await qr.boundingBox();
      expect(box && box.width >= 100, `the QR code should be drawn, got ${JSON.stringify(box)}`);
      const url = await page.locator('[data-testid="new-connect-link"]').inputValue();
      expect(url.startsWith(`${base}/connect/`), `connect link URL: ${url}`);
      await shot(page, 'connect-link-created.png');
      // The result page and the link's page at phone width.
      for (const target of [null, url]) {
        if (target) await page.goto(target);
        await page.setViewportSize({ width: 390, height: 844 });
        const m = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, iw: window.innerWidth, title: document.title }));
        expect(m.title.length > 0, `${page.url()} has no title`);
        expect(m.sw <= m.iw + 1, `${page.url()} overflows at 390 px: scrollWidth ${m.sw} > ${m.iw}`);
        await page.setViewportSize({ width: 1280, height: 800 });
      }
      await expectText(page.locator('[data-testid="connect-link"]'), 'Connect Plugboard Sandbox', 'the connect link page');
      await page.locator('[data-testid="connect-link-continue"]').click();
      await page.waitForURL((u) => u.pathname === '/sandbox/oauth/authorize', { timeout: NAV_TIMEOUT_MS });
      await page.getByRole('button', { name: 'Approve' }).click();
      await waitForPath(page, '/connected/sandbox', 'after approving through the connect link');
      await expectText(page.locator('[data-testid="connected"]'), 'Plugboard Sandbox connected', 'the connected page');
      await expectText(page.locator('[data-testid="connected"]'), 'CONNECTED', 'the connection status on the connected page');
      await shot(page, 'connect-link-connected.png');
      // Used once: opening it again is "not found", with the nav.
      const again = await page.goto(url);
      expect(again.status() === 404, `a used link should be 404, got ${again.status()}`);
      expect((await page.locator('nav.topnav').count()) === 1, 'the gone page keeps the nav');
    },
    // 13: the settings index from the nav; the audit log shows the
    // keys revoked in the earlier revoke step, filtered by that action.
    async () => {
      const { page } = owner;
      await page.goto(`${base}/`);
      await page.locator('[data-testid="nav-settings"]').click();
      await waitForPath(page, '/settings', 'opening Settings from the nav');
      await page.locator('[data-testid="settings-link"][href="/settings/audit"]').click();
      await waitForPath(page, '/settings/audit', 'opening the audit log');
      await page.getByLabel('Action', { exact: true }).selectOption('service_key.revoke');
      await page.locator('[data-testid="audit-filters"]').getByRole('button', { name: 'Filter' }).click();
      await page.waitForURL((u) => u.pathname === '/settings/audit' && u.searchParams.get('action') === 'service_key.revoke', { timeout: NAV_TIMEOUT_MS });
      const actions = (await page.locator('[data-testid="audit-action"]').allInnerTexts()).map((a) => a.trim());
      expect(actions.length > 0 && actions.every((a) => a === 'service_key.revoke'), `the filtered audit log should list only service_key.revoke, got ${JSON.stringify(actions)}`);
    },
    // 14: the sandbox's fault switch makes the next data request fail;
    // the card says so (not CONNECTED with the old time) and links the job.
    async () => {
      const { page } = owner;
      await page.setViewportSize({ width: 1280, height: 800 });
      const res = await fetch(`${base}/sandbox/_faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ bad_request_next: 1 }),
      });
      expect(res.status === 204, `sandbox fault switch: HTTP ${res.status}`);
      await page.goto(`${base}/data/connections`);
      // Synced minutes ago (step 6), so inside the Sync now interval: the
      // owner forces it.
      await page.locator('[data-testid="force-sync-sandbox"]').click();
      await waitForPath(page, '/data/connections', 'after forcing a sync');
      const failed = page.locator('[data-testid="sync-failed-sandbox"]');
      const deadline = Date.now() + 30_000;
      while ((await failed.count()) === 0) {
        expect(Date.now() < deadline, 'the card never showed the failed sync');
        await sleep(500);
        await page.reload();
      }
      await expectText(page.locator('[data-testid="status-sandbox"]'), 'SYNC FAILED', 'sandbox card status after a failed sync');
      await expectText(failed, 'HTTP 400', 'the failed sync names the provider answer');
      await failed.getByRole('link', { name: 'See the job' }).click();
      await page.waitForURL((u) => /^\/data\/jobs\/[0-9a-f-]{36}$/.test(u.pathname), { timeout: NAV_TIMEOUT_MS });
      await expectText(page.locator('[data-testid="job-status"]'), 'failed', 'the linked job failed');
    },
    // 15: the object's Sync controls tab: a sync the sandbox refuses is
    // listed as failed; clicking Retry queues a new job that succeeds.
    async () => {
      const { page } = owner;
      // The previous step's jobs finish first, so the fault hits ours.
      const deadline = Date.now() + 60_000;
      for (;;) {
        const jobs = await (await page.request.get(`${base}/api/integrations/sandbox/jobs`)).json();
        if (!jobs.some((j) => !['succeeded', 'failed', 'cancelled'].includes(j.status))) break;
        expect(Date.now() < deadline, 'sandbox jobs still running before the Sync controls step');
        await sleep(300);
      }
      await page.goto(`${base}/integrations/sandbox/projects`);
      await page.locator('nav.tabs').getByRole('link', { name: 'Sync controls' }).click();
      await waitForPath(page, '/integrations/sandbox/projects/sync', 'opening the Sync controls tab');
      expect((await page.locator('[data-testid="sync-paused"]').count()) === 0, 'Sync controls say the worker is offline');
      const res = await fetch(`${base}/sandbox/_faults`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ bad_request_next: 1 }),
      });
      expect(res.status === 204, `sandbox fault switch: HTTP ${res.status}`);
      // Synced minutes ago, so inside the interval: the owner forces it.
      const force = page.locator('[data-testid="force-sync"]');
      if ((await force.count()) > 0) await force.click();
      else await page.locator('[data-testid="sync-now"]').click();
      await expectText(page.locator('.flash'), 'queued', 'Sync now on the tab');
      const newest = page.locator('[data-testid^="job-row-"]').first();
      const waitNewest = async (status, what) => {
        const until = Date.now() + 30_000;
        while ((await newest.getAttribute('data-status')) !== status) {
          expect(Date.now() < until, `${what}: the newest job is ${await newest.getAttribute('data-status')}, not ${status}`);
          await sleep(500);
          await page.reload();
        }
      };
      await waitNewest('failed', 'the refused sync');
      await expectText(newest, 'HTTP 400', 'the failed job names the provider answer');
      const failedId = (await newest.getAttribute('data-testid')).replace('job-row-', '');
      await newest.locator(`[data-testid="retry-${failedId}"]`).click();
      await expectText(page.locator('.flash'), 'Retry queued', 'retry flash');
      await waitForPath(page, '/integrations/sandbox/projects/sync', 'after Retry');
      await waitNewest('succeeded', 'the retried sync');
      const retriedId = (await newest.getAttribute('data-testid')).replace('job-row-', '');
      expect(retriedId !== failedId, 'the retry is a new job');
      await expectText(page.locator('[data-testid="last-run"]'), 'succeeded', 'last run after the retry');
      await shot(page, 'integrations-sync-controls.png');
    },
    // 16
    async () => {
      const { page } = owner;
      await page.setViewportSize({ width: 390, height: 844 });
      const jobLink = page.locator('a[href^="/data/jobs/"]');
      await page.goto(`${base}/data/connections`);
      if (!jobPath) jobPath = (await jobLink.count()) > 0 ? await jobLink.first().getAttribute('href') : null;
      const pages = ['/', '/data', '/data/connections', '/data/metrics', '/data/projects', '/data/people', '/data/jobs', '/data/sandbox/accounts', '/settings', '/settings/members', '/settings/keys', '/settings/webhooks', '/settings/audit', '/settings/workspace', '/integrations', '/integrations/sandbox', '/integrations/sandbox/projects/sync', '/connected/sandbox', '/api/docs', '/no-such-page'];
      if (jobPath) pages.push(jobPath);
      if (projectPath) pages.push(projectPath);
      for (const p of pages) {
        await page.goto(`${base}${p}`);
        const m = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, iw: window.innerWidth, title: document.title }));
        expect(m.title.length > 0, `${p} has no title`);
        if (m.sw > m.iw + 1) await shot(page, `overflow${p.replace(/\W+/g, '-')}.png`);
        expect(m.sw <= m.iw + 1, `${p} overflows at 390 px: scrollWidth ${m.sw} > ${m.iw}`);
      }
    },
    // 17
    async () => {
      expect(consoleErrors.length === 0, `console errors:\n${consoleErrors.join('\n')}`);
    },
  ];

  for (let i = 0; i < steps.length; i++) {
    const label = `step ${i + 1}/${steps.length}: ${STEPS[i]}`;
    const t0 = Date.now();
    try {
      await steps[i]();
    } catch (e) {
      const msg = e instanceof Expectation ? e.message : e?.stack || String(e);
      console.error(`FAIL ${label}\n  ${msg.replace(/\n/g, '\n  ')}`);
      const page = contexts.at(-1)?.pages()[0];
      if (page) {
        console.error(`  (browser was on ${page.url()})`);
        await shot(page, `failure-step${i + 1}.png`).catch(() => {});
      }
      return { passed, failed: steps.length - passed };
    }
    passed++;
    console.log(`ok   ${label} (${Date.now() - t0} ms)`);
  }
  return { passed, failed: 0 };
}

async function cleanup() {
  for (const c of contexts.reverse()) await c.close().catch(() => {});
  await stopServer().catch(() => {});
  if (tmpRoot) await rm(tmpRoot, { recursive: true, force: true }).catch(() => {});
}

const watchdog = setTimeout(async () => {
  console.error(`FAIL whole run exceeded ${TOTAL_BUDGET_MS / 1000} s`);
  try {
    server?.kill('SIGKILL');
  } catch {}
  console.log(`browser: ${passed} passed, ${STEPS.length - passed} failed`);
  process.exit(1);
}, TOTAL_BUDGET_MS);

let result = { passed: 0, failed: STEPS.length };
try {
  result = await main();
} catch (e) {
  console.error(`FAIL setup: ${e?.stack || e}`);
} finally {
  await cleanup();
  clearTimeout(watchdog);
}
console.log(`browser: ${result.passed} passed, ${result.failed} failed`);
process.exit(result.failed === 0 ? 0 : 1);
