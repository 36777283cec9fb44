// Real-browser smoke test for Plugboard.
//
// Starts the built server binary on a free loopback port with a throwaway data
// dir, then drives Debian's Chromium (via playwright-core, no bundled browser)
// through sign-up, log-in, inviting a member, accepting the invite in a fresh
// browser context, and a mobile-width layout check.
//
//   apt-get install -y chromium          # when /usr/bin/chromium is missing
//   npm ci --prefix tests/browser
//   node tests/browser/smoke.mjs         # PLUGBOARD_BIN=... to pick the binary
//
// Exit code 0 and "browser: N passed, 0 failed" on success; exit code 1 and
// "browser: X passed, Y failed" otherwise (Y counts the failed step and the
// steps after it, which were not run).

import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
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
const TOTAL_BUDGET_MS = 120_000;
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
];

class Expectation extends Error {}
function expect(cond, message) {
  if (!cond) throw new Expectation(message);
}

const run = Date.now().toString(36);
const ORG = `Smoke Org ${run}`;
const OWNER = { name: 'Smoke Owner', email: `owner-${run}@example.com`, password: 'correct horse battery' };
const FRIEND = { name: 'Smoke Friend', email: 'friend@example.com', password: 'another long passphrase' };

let tmpRoot;
let passed = 0;
let server;
let serverLog = '';
const contexts = [];

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

async function newContext(name, viewport = { width: 1280, height: 800 }) {
  const profile = await mkdtemp(path.join(tmpRoot, `${name}-profile-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    timeout: 30_000,
  });
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

async function main() {
  tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'plugboard-browser-'));
  await mkdir(ARTIFACTS, { recursive: true });
  let base;
  let owner;
  let inviteLink;

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
      await page.goto(`${base}/data`);
      await page.locator('[data-testid="connect-sandbox"]').click();
      await page.waitForURL((u) => u.pathname === '/sandbox/oauth/authorize', { timeout: NAV_TIMEOUT_MS });
      await page.getByRole('button', { name: 'Approve' }).click();
      await waitForPath(page, '/data/sandbox/accounts', 'after approving at the sandbox');
      await page.locator('[data-testid="accounts-form"] input[name="account_id"]').first().check();
      await page.getByRole('button', { name: 'Save' }).click();
      await waitForPath(page, '/data', 'after choosing an account');
      await expectText(page.locator('[data-testid="status-sandbox"]'), 'CONNECTED', 'sandbox card status');
      await page.locator('[data-testid="card-sandbox"]').getByRole('button', { name: 'Test' }).click();
      await waitForPath(page, '/data', 'after testing');
      await expectText(page.locator('.flash'), 'Test passed', 'test flash');
      await page.locator('[data-testid="sync-sandbox"]').click();
      await waitForPath(page, '/data', 'after Sync now');
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
