// Real-browser admin journey through the Integrations Hub, by clicking:
// open the hub, connect the sandbox, set a projects rule with a filter, a
// mapping with preserve_local on a field, run initial matching against two
// local projects made beforehand, a dry run and then a real sync, edit a
// project locally and sync again — the local value is kept and the
// source's value shown beside it. Numbers and values are checked against
// the sandbox's own data API, not Plugboard's store. Every page visited is
// checked for horizontal overflow at 390 px, and the console for errors.
//
// The two local projects are created through the app's JSON API with the
// browser's session (Plugboard has no page that creates a project); every
// other step is clicks and typing.
//
//   node tests/browser/admin.mjs         # PLUGBOARD_BIN=... to pick the binary
//
// Exit code 0 and "browser admin: N passed, 0 failed" on success.

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
const TOTAL_BUDGET_MS = 240_000;
const HEALTH_TIMEOUT_MS = 30_000;
const ACTION_TIMEOUT_MS = 10_000;
const NAV_TIMEOUT_MS = 15_000;
const JOB_TIMEOUT_MS = 60_000;

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
  'sign up; open the Integrations Hub from the nav',
  'connect the sandbox from its provider page',
  'two local projects exist before matching (made through the API with the session)',
  'a projects rule with a filter, disabled and in dry run, saved from the Rule tab',
  'the Mapping tab: name under preserve_local, the rest follow the source; saved',
  "the Initial matching tab: fetch records, both local projects suggested, confirmed; the summary's numbers are the sandbox's",
  'a dry run changes no project; then the rule enabled and a real sync creates the rest',
  'edit a project locally, sync again: the local name is kept, the source name shown beside it',
  'no page visited overflows at 390 px',
  'no console errors or CSP violations',
];

class Expectation extends Error {}
function expect(cond, message) {
  if (!cond) throw new Expectation(message);
}

const run = Date.now().toString(36);
const ORG = `Admin Org ${run}`;
const OWNER = { name: 'Hub Admin', email: `admin-${run}@example.com`, password: 'correct horse battery' };
// The sandbox's OAuth client: the app connects with it, and the test reads
// the sandbox's data API with it (client credentials).
const SANDBOX_CLIENT = { id: `admin-sandbox-${run}`, secret: `admin-sandbox-secret-${run}` };
const SANDBOX_COMPANY = 'acme';
const LOCAL_NAME = `Edited here ${run}`;

let tmpRoot;
let passed = 0;
let server;
let serverLog = '';
const contexts = [];
const consoleErrors = [];
// Every page the journey saw (path + query), checked at 390 px at the end.
const visited = new Set();

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
    if (exited) throw new Expectation(`server exited early (code ${exited.code}, signal ${exited.signal}); output:\n${serverLog}`);
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
  const watch = (page) => {
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`${name}: ${m.text()} (${m.location().url})`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`${name}: ${e.message}`));
    page.on('framenavigated', (f) => {
      if (f !== page.mainFrame()) return;
      const u = new URL(f.url());
      if (u.origin === new URL(page.url()).origin && !u.pathname.startsWith('/sandbox/')) visited.add(u.pathname + u.search);
    });
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

async function noErrorsOnPage(page, what) {
  const refused = await page.locator('.field-error, p.error').allInnerTexts();
  expect(refused.length === 0, `${what} was refused: ${JSON.stringify(refused)}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
}

// The sandbox's parent projects, read from its own data API with a token
// of its own (not through Plugboard).
async function sandboxParents(base) {
  const tokenRes = await fetch(`${base}/sandbox/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', client_id: SANDBOX_CLIENT.id, client_secret: SANDBOX_CLIENT.secret }),
  });
  expect(tokenRes.status === 200, `sandbox token: HTTP ${tokenRes.status}`);
  const { access_token: token } = await tokenRes.json();
  const res = await fetch(`${base}/sandbox/api/projects?limit=500&parent_only=true`, {
    headers: { authorization: `Bearer ${token}`, 'x-sandbox-company': SANDBOX_COMPANY },
  });
  expect(res.status === 200, `sandbox projects: HTTP ${res.status}`);
  const body = await res.json();
  expect(body.items.length === body.total, `one page of sandbox projects: ${body.items.length} of ${body.total}`);
  return body.items;
}

// The newest job of the sandbox's `object`, once it has finished
// (read-only polling of the jobs API; the actions are clicks).
async function waitForJob(page, base, object, after) {
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  for (;;) {
    const jobs = await (await page.request.get(`${base}/api/integrations/sandbox/jobs`)).json();
    const mine = jobs.filter((j) => j.object === object && !after.has(j.id ?? j.jobId));
    const open = mine.filter((j) => !['succeeded', 'failed', 'cancelled'].includes(j.status));
    if (mine.length > 0 && open.length === 0) return mine[0];
    expect(Date.now() < deadline, `${object} job still running: ${JSON.stringify(open.map((j) => j.status))}`);
    await sleep(300);
  }
}

async function jobIds(page, base) {
  const jobs = await (await page.request.get(`${base}/api/integrations/sandbox/jobs`)).json();
  return new Set(jobs.map((j) => j.id ?? j.jobId));
}

// "Sync now" on the projects object's Sync controls tab (or "Force sync"
// inside the minimum interval), then waits for the job it queued.
async function syncNow(page, base, what) {
  const before = await jobIds(page, base);
  await openTab(page, 'Sync controls');
  const force = page.locator('[data-testid="force-sync"]');
  if ((await force.count()) > 0) await force.click();
  else await page.locator('[data-testid="sync-now"]').click();
  await page.waitForLoadState('load');
  const job = await waitForJob(page, base, 'projects', before);
  expect(job.status === 'succeeded', `${what}: the projects job ${job.status}: ${JSON.stringify(job.error ?? job)}`);
  return job;
}

// Opens the sandbox's projects object from the hub and one of its tabs.
async function openTab(page, tab) {
  await page.locator('nav.topnav').getByRole('link', { name: 'Integrations', exact: true }).click();
  await waitForPath(page, '/integrations', 'the Integrations Hub');
  await page.locator('[data-testid="provider-sandbox"] h2 a').click();
  await waitForPath(page, '/integrations/sandbox', 'the sandbox page');
  await page.locator('[data-testid="open-object-projects"]').click();
  await waitForPath(page, '/integrations/sandbox/projects', 'the projects object');
  if (tab !== 'Rule') {
    await page.locator('nav.tabs').getByRole('link', { name: tab, exact: true }).click();
    const suffix = { Mapping: '/mapping', 'Initial matching': '/matching', 'Sync controls': '/sync' }[tab];
    await waitForPath(page, `/integrations/sandbox/projects${suffix}`, `the ${tab} tab`);
  }
}

async function main() {
  tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'plugboard-admin-'));
  await mkdir(ARTIFACTS, { recursive: true });
  let base;
  let owner;
  let parents;
  let active;
  let byNumber;
  let byName;
  let local = [];

  const steps = [
    async () => {
      base = await startServer(await freePort());
      parents = await sandboxParents(base);
      // The rule's filter keeps active projects; matching pairs two of them.
      active = parents.filter((p) => p.status === 'active');
      const key = (p) => `${p.name}|${p.client_name}`.toLowerCase();
      const unique = active.filter((p) => parents.filter((q) => key(q) === key(p)).length === 1);
      expect(unique.length >= 2, `two active sandbox projects with a unique name and client: ${unique.length}`);
      [byNumber, byName] = unique;
    },
    async () => {
      owner = await newContext('admin');
      const { page } = owner;
      await page.goto(`${base}/signup`);
      await page.getByLabel('Name', { exact: true }).fill(OWNER.name);
      await page.getByLabel('Email', { exact: true }).fill(OWNER.email);
      await page.getByLabel('Password').fill(OWNER.password);
      await page.getByLabel('Organization', { exact: true }).fill(ORG);
      await page.getByRole('button', { name: 'Sign up' }).click();
      await waitForPath(page, '/', 'after signing up');
      await page.locator('nav.topnav').getByRole('link', { name: 'Integrations', exact: true }).click();
      await waitForPath(page, '/integrations', 'after clicking Integrations in the nav');
      await expectText(page.locator('[data-testid="provider-status-sandbox"]'), 'Available', 'sandbox tile before connecting');
    },
    async () => {
      const { page } = owner;
      await page.locator('[data-testid="provider-sandbox"] h2 a').click();
      await waitForPath(page, '/integrations/sandbox', 'after opening the sandbox tile');
      const form = page.locator('[data-testid="credentials-form"]');
      await form.getByLabel('Client ID', { exact: true }).fill(SANDBOX_CLIENT.id);
      await form.getByLabel('Client secret', { exact: true }).fill(SANDBOX_CLIENT.secret);
      await form.locator('input[name="header:X-Sandbox-Company"]').fill(SANDBOX_COMPANY);
      await form.getByRole('button', { name: 'Connect', exact: true }).click();
      await waitForPath(page, '/integrations/sandbox', 'after connecting');
      await noErrorsOnPage(page, 'connecting');
      await expectText(page.locator('[data-testid="connections"]'), 'CONNECTED', 'sandbox connection status');
      await shot(page, 'admin-connected.png');
    },
    async () => {
      const { page } = owner;
      const make = async (body) => {
        const res = await page.request.post(`${base}/api/projects`, { data: body });
        expect(res.status() === 201, `create project: HTTP ${res.status()} ${await res.text()}`);
        return res.json();
      };
      local = [
        await make({ number: byNumber.number, name: 'Named here first' }),
        await make({ name: byName.name.toUpperCase(), clientName: byName.client_name }),
      ];
    },
    async () => {
      const { page } = owner;
      await openTab(page, 'Rule');
      const form = page.locator('[data-testid="rule-form"]');
      await form.getByRole('radio', { name: 'Every N minutes' }).check();
      await form.locator('input[name="/interval/minutes"]').fill('60');
      await form.locator('select[name="/filters/0/field"]').selectOption('status');
      await form.locator('select[name="/filters/0/op"]').selectOption('eq');
      await form.locator('input[name="/filters/0/value"]').fill('active');
      await form.locator('select[name="/conflictPolicy"]').selectOption('auto_create');
      await form.locator('input[name="/dryRun"]').check();
      await form.locator('input[name="/enabled"]').uncheck();
      await form.getByRole('button', { name: 'Save rule' }).click();
      await waitForPath(page, '/integrations/sandbox/projects', 'after saving the rule');
      await noErrorsOnPage(page, 'the rule');
      await expectText(page.locator('.flash'), 'Rule saved', 'rule saved flash');
      const value = await page.locator('input[name="/filters/0/value"]').inputValue();
      expect(value === 'active', `the saved filter value reads ${JSON.stringify(value)}`);
    },
    async () => {
      const { page } = owner;
      await page.locator('nav.tabs').getByRole('link', { name: 'Mapping', exact: true }).click();
      await waitForPath(page, '/integrations/sandbox/projects/mapping', 'the Mapping tab');
      const form = page.locator('[data-testid="mapping-form"]');
      // Rows are the provider's fields; the defaults are its metadata's.
      for (const source of ['number', 'name', 'client_name', 'status', 'start_date', 'end_date']) {
        const row = form.locator(`[data-testid="map-${source}"]`);
        expect((await row.count()) === 1, `a mapping row for ${source}`);
        const target = await row.locator('select').first().inputValue();
        expect(target === source, `${source} maps to ${JSON.stringify(target)} by default`);
        await row.locator('select').nth(1).selectOption(source === 'name' ? 'preserve_local' : 'follow_source');
      }
      await form.getByRole('button', { name: 'Save mapping' }).click();
      await waitForPath(page, '/integrations/sandbox/projects/mapping', 'after saving the mapping');
      await noErrorsOnPage(page, 'the mapping');
      await expectText(page.locator('.flash'), 'Mapping saved (version 1)', 'mapping saved flash');
      const policy = await form.locator('[data-testid="map-name"] select').nth(1).inputValue();
      expect(policy === 'preserve_local', `name's policy reads ${policy}`);
      const other = await form.locator('[data-testid="map-client_name"] select').nth(1).inputValue();
      expect(other === 'follow_source', `client_name's policy reads ${other}`);
      await shot(page, 'admin-mapping.png');
    },
    async () => {
      const { page } = owner;
      await page.locator('nav.tabs').getByRole('link', { name: 'Initial matching', exact: true }).click();
      await waitForPath(page, '/integrations/sandbox/projects/matching', 'the Initial matching tab');
      await expectText(page.locator('[data-testid="matching"]'), 'No unmatched records stored', 'the wizard before fetching');
      const before = await jobIds(page, base);
      await page.locator('[data-testid="fetch-records"]').click();
      await waitForPath(page, '/integrations/sandbox/projects/matching', 'after Fetch records');
      await expectText(page.locator('.flash'), 'Fetching Projects records', 'fetch flash');
      const job = await waitForJob(page, base, 'projects', before);
      expect(job.status === 'succeeded', `the fetch job ${job.status}`);
      await page.locator('nav.tabs').getByRole('link', { name: 'Initial matching', exact: true }).click();
      await page.locator('[data-testid="matching-form"]').waitFor({ state: 'visible' });
      // Every stored parent record is offered (the rule's filter applies
      // when records are mapped, not when they are stored).
      const rows = await page.locator('[data-testid^="pair-"]').count();
      expect(rows === parents.length, `the wizard lists ${rows} records; the sandbox has ${parents.length} parent projects`);
      const matched = page.locator('[data-testid="group-matched"]');
      for (const [p, l] of [[byNumber, local[0]], [byName, local[1]]]) {
        const row = matched.locator(`[data-testid="pair-${p.id}"]`);
        expect((await row.count()) === 1, `${p.id} (${p.name}) is suggested as matched`);
        await expectText(row, p.name, `the matched row shows the sandbox's name of ${p.id}`);
        const chosen = await row.locator('select').inputValue();
        expect(chosen === l.id, `${p.id} is paired with ${chosen}, expected ${l.id}`);
      }
      expect((await matched.locator('[data-testid^="pair-"]').count()) === 2, 'exactly two matched');
      await shot(page, 'admin-matching.png');
      await page.locator('[data-testid="confirm-matching"]').click();
      await waitForPath(page, '/integrations/sandbox/projects/matching', 'after confirming');
      await expectText(page.locator('[data-testid="summary-matched"]'), '2', 'matched');
      await expectText(page.locator('[data-testid="summary-changed"]'), '0', 'changed by the admin');
      await expectText(page.locator('[data-testid="summary-skipped"]'), String(parents.length - 2), 'skipped');
      expect((await page.locator('[data-testid^="pair-"]').count()) === parents.length - 2, 'linked records leave the wizard');
      await shot(page, 'admin-matched.png');
    },
    async () => {
      const { page } = owner;
      await syncNow(page, base, 'dry run');
      await page.locator('nav.topnav').getByRole('link', { name: 'Projects', exact: true }).click();
      await waitForPath(page, '/data/projects', 'projects after the dry run');
      await expectText(page.locator('[data-testid="count"]'), '2 projects', 'a dry run creates nothing');
      // Matching applied the source's values: follow_source fields took them.
      const p1 = await (await page.request.get(`${base}/api/projects/${local[0].id}`)).json();
      expect(p1.clientName === byNumber.client_name, `client of ${byNumber.id}: ${p1.clientName} vs the sandbox's ${byNumber.client_name}`);
      // The rule enabled, dry run off.
      await openTab(page, 'Rule');
      const form = page.locator('[data-testid="rule-form"]');
      await form.locator('input[name="/dryRun"]').uncheck();
      await form.locator('input[name="/enabled"]').check();
      await form.getByRole('button', { name: 'Save rule' }).click();
      await waitForPath(page, '/integrations/sandbox/projects', 'after enabling the rule');
      await noErrorsOnPage(page, 'enabling the rule');
      await syncNow(page, base, 'real sync');
      await page.locator('nav.topnav').getByRole('link', { name: 'Projects', exact: true }).click();
      await waitForPath(page, '/data/projects', 'projects after the real sync');
      await expectText(page.locator('[data-testid="count"]'), `${active.length} projects`, "the sandbox's active projects, two of them matched");
    },
    async () => {
      const { page } = owner;
      await page.locator('[data-testid="filters"] input[name="q"]').fill(byNumber.number);
      await page.locator('[data-testid="filters"] button[type="submit"]').click();
      await page.locator(`[data-testid="row-${local[0].id}"] a`).first().click();
      await waitForPath(page, `/data/projects/${local[0].id}`, 'the matched project');
      const edit = page.locator('[data-testid="edit-form"]');
      await edit.getByLabel('Name', { exact: true }).fill(LOCAL_NAME);
      await edit.getByRole('button', { name: 'Save' }).click();
      await waitForPath(page, `/data/projects/${local[0].id}`, 'after editing');
      await noErrorsOnPage(page, 'the edit');
      await syncNow(page, base, 'sync after the edit');
      // Back to the project by clicking: the mapping tab links the list.
      await openTab(page, 'Mapping');
      await page.locator('[data-testid="entities-link"]').click();
      await waitForPath(page, '/data/projects', 'the projects list from the Mapping tab');
      await page.locator('[data-testid="filters"] input[name="q"]').fill(byNumber.number);
      await page.locator('[data-testid="filters"] button[type="submit"]').click();
      await page.locator(`[data-testid="row-${local[0].id}"] a`).first().click();
      await waitForPath(page, `/data/projects/${local[0].id}`, 'the edited project');
      const row = page.locator('[data-testid="field-name"]');
      const cells = (await row.locator('td').allInnerTexts()).map((t) => t.trim());
      const source = (await sandboxParents(base)).find((p) => p.id === byNumber.id);
      expect(cells[1] === LOCAL_NAME, `the local name is kept: ${JSON.stringify(cells)}`);
      expect(cells[2] === source.name, `the source name beside it is the sandbox's ${JSON.stringify(source.name)}: ${JSON.stringify(cells)}`);
      expect(cells[3].includes('edited here'), `the state says edited here: ${JSON.stringify(cells)}`);
      expect((await page.locator('[data-testid="reset-name"]').count()) === 1, 'a reset-to-source action for the name');
      await shot(page, 'admin-project.png');
    },
    async () => {
      const { page } = owner;
      await page.setViewportSize({ width: 390, height: 844 });
      const pages = [...visited].filter((p) => !p.startsWith('/api/'));
      expect(pages.length >= 8, `pages visited: ${JSON.stringify(pages)}`);
      for (const p of pages) {
        await page.goto(`${base}${p}`);
        const m = await page.evaluate(() => ({ sw: document.documentElement.scrollWidth, iw: window.innerWidth, title: document.title }));
        expect(m.title.length > 0, `${p} has no title`);
        if (m.sw > m.iw + 1) await shot(page, `admin-overflow${p.replace(/\W+/g, '-')}.png`);
        expect(m.sw <= m.iw + 1, `${p} overflows at 390 px: scrollWidth ${m.sw} > ${m.iw}`);
      }
    },
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
        await shot(page, `admin-failure-step${i + 1}.png`).catch(() => {});
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
  console.log(`browser admin: ${passed} passed, ${STEPS.length - passed} failed`);
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
console.log(`browser admin: ${result.passed} passed, ${result.failed} failed`);
process.exit(result.failed === 0 ? 0 : 1);
