#!/usr/bin/env node
// Walks the registry's web console in a real browser (Debian's headless
// Chromium, driven by playwright-core) against a real registry that
// tests/tests/e2e/console.rs seeded, as the people of issue 27:
//
//   vic, a viewer: reads everything, is offered no review, and sees a
//     deployer's markup (`<img onerror>`, `<script>`) as text that runs nothing;
//   tom and bea, approvers: tom reads a pending production transition's
//     gates, the version's card and lineage, and approves it; bea rejects another;
//   dora, a deployer: edits traffic through the confirmation diff with
//     `if_revision`, is refused a stale edit, runs a rollout's buttons, reads
//     the drift plots, filters the audit log and looks at the fleet.
//
// Every view is checked by axe-core (a serious or critical violation fails);
// no Content-Security-Policy violation may be reported; the token must be in
// no URL, storage or cookie. A screenshot of each step goes to --screenshots.
//
//   node walk.mjs --url http://127.0.0.1:PORT --tokens tokens.json --screenshots DIR
//
// Modules load from SLUICE_CONSOLE_NODE_MODULES (tests/console/install.sh
// puts them in ~/.cache/sluice/console-node/node_modules), outside the clone.

import { createRequire } from 'node:module';
import { mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    tokens: { type: 'string' },
    screenshots: { type: 'string' },
    model: { type: 'string', default: 'credit_risk' },
    chromium: { type: 'string', default: process.env.SLUICE_CHROMIUM || '/usr/bin/chromium' },
  },
});
if (!args.url || !args.tokens || !args.screenshots) {
  console.error('usage: walk.mjs --url REGISTRY_URL --tokens TOKENS.json --screenshots DIR');
  process.exit(2);
}

const modules = process.env.SLUICE_CONSOLE_NODE_MODULES
  || path.join(os.homedir(), '.cache', 'sluice', 'console-node', 'node_modules');
const require = createRequire(import.meta.url);
const { chromium } = require(path.join(modules, 'playwright-core'));
const AXE_SOURCE = readFileSync(path.join(modules, 'axe-core', 'axe.min.js'), 'utf8');

const BASE = args.url.replace(/\/+$/, '');
const MODEL = args.model;
const TOKENS = JSON.parse(readFileSync(args.tokens, 'utf8'));
const SHOTS = args.screenshots;
mkdirSync(SHOTS, { recursive: true });

const XSS_IMG = '<img src=x onerror="window.__pwned=1">';
const XSS_SCRIPT = '<script>window.__pwned=1</script>';
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const TIMEOUT_MS = 15000;

class WalkFailure extends Error {}

function check(condition, message) {
  if (!condition) {
    throw new WalkFailure(message);
  }
}

function log(text) {
  console.error(`walk: ${text}`);
}

// ---------------------------------------------------------------- the API, beside the browser

async function api(actor, method, apiPath, body) {
  const response = await fetch(`${BASE}${apiPath}`, {
    method,
    headers: { Authorization: `Bearer ${TOKENS[actor]}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new WalkFailure(`${method} ${apiPath} as ${actor}: ${response.status} ${text}`);
  }
  return data;
}

// ---------------------------------------------------------------- the browser

let shots = 0;
const axeSummary = [];
// The page of the story under way: shown as it was when a step failed.
let current = null;

async function screenshot(page, name) {
  shots += 1;
  const file = path.join(SHOTS, `${String(shots).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  log(`screenshot ${file}`);
}

/** axe-core on what the page shows now: serious or critical violations fail. */
async function accessible(page, label) {
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) {
    // Not page.addScriptTag: that adds an inline <script>, which the
    // console's Content-Security-Policy refuses (rightly). The DevTools
    // protocol's evaluation is not subject to the page's CSP.
    await page.evaluate(AXE_SOURCE);
  }
  const violations = await page.evaluate(async () => {
    const results = await window.axe.run(document, { resultTypes: ['violations'] });
    return results.violations.map((violation) => ({
      id: violation.id,
      impact: violation.impact,
      help: violation.help,
      nodes: violation.nodes.slice(0, 5).map((node) => node.target.join(' ')),
    }));
  });
  const blocking = violations.filter((violation) => ['serious', 'critical'].includes(violation.impact));
  for (const violation of violations) {
    log(`axe ${label}: ${violation.impact} ${violation.id} (${violation.help}) at ${violation.nodes.join(', ')}`);
  }
  axeSummary.push(`${label}: ${violations.length} violation(s), ${blocking.length} serious or critical`);
  check(
    blocking.length === 0,
    `axe-core found serious or critical violations on ${label}: ${JSON.stringify(blocking, null, 2)}`,
  );
}

async function open(browser, actor) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // Before any script of the page: every CSP violation the document reports.
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (event) => {
      window.__cspViolations.push(`${event.violatedDirective} blocked ${event.blockedURI || 'inline'} (${event.sourceFile}:${event.lineNumber})`);
    });
  });
  const page = await context.newPage();
  current = page;
  page.setDefaultTimeout(TIMEOUT_MS);
  const problems = [];
  page.on('console', (message) => {
    const text = message.text();
    if (/Content.Security.Policy|Refused to/i.test(text)) {
      problems.push(`console: ${text}`);
    } else if (message.type() === 'error') {
      log(`console error (${actor}): ${text}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`uncaught error in the page: ${error.message}`));
  const response = await page.goto(`${BASE}/console/`);
  check(response.status() === 200, `/console/ answered ${response.status()}`);
  const headers = response.headers();
  check(headers['content-security-policy'] === CSP, `/console/ has Content-Security-Policy ${JSON.stringify(headers['content-security-policy'])}, expected ${CSP}`);
  check(headers['x-content-type-options'] === 'nosniff', '/console/ lacks X-Content-Type-Options: nosniff');
  check(headers['referrer-policy'] === 'no-referrer', '/console/ lacks Referrer-Policy: no-referrer');
  await heading(page, 'Sign in');
  return { context, page, problems, actor };
}

async function heading(page, text) {
  await page.locator('#view h1').filter({ hasText: text }).waitFor();
}

async function signIn(session) {
  const { page, actor } = session;
  await page.getByLabel('Registry token').fill(TOKENS[actor]);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#session').filter({ hasText: `Signed in as ${actor}` }).waitFor();
  const who = await api(actor, 'GET', '/api/v1/whoami');
  const shown = await page.locator('#session').innerText();
  check(shown.includes(`(${who.role})`), `the header says ${JSON.stringify(shown)}, not ${actor}'s role ${who.role}`);
  await tokenNowhere(session);
}

/**
 * Presses Tab until `locator`'s element has the focus, failing past `most`
 * presses: it is reachable from the keyboard, and its focus is visible.
 */
async function tabTo(page, locator, most = 80) {
  const target = await locator.elementHandle();
  for (let pressed = 0; pressed < most; pressed += 1) {
    await page.keyboard.press('Tab');
    const focus = await page.evaluate((element) => {
      if (document.activeElement !== element) {
        return null;
      }
      const style = window.getComputedStyle(element);
      return { outline: style.outlineStyle, shadow: style.boxShadow };
    }, target);
    if (focus) {
      check(focus.outline !== 'none' || focus.shadow !== 'none', `the keyboard focus on ${locator} is not visible: ${JSON.stringify(focus)}`);
      return;
    }
  }
  throw new Error(`${locator} is not reachable with Tab within ${most} presses`);
}

/** The token is in no URL, storage, cookie or element of the page. */
async function tokenNowhere({ page, actor }) {
  const token = TOKENS[actor];
  const places = await page.evaluate(() => ({
    url: window.location.href,
    localStorage: JSON.stringify({ ...window.localStorage }),
    sessionStorage: JSON.stringify({ ...window.sessionStorage }),
    cookie: document.cookie,
    document: document.documentElement.outerHTML,
    inputs: [...document.querySelectorAll('input')].map((input) => input.value).join('\n'),
  }));
  for (const [place, text] of Object.entries(places)) {
    check(!text.includes(token), `${actor}'s token is in the page's ${place}`);
  }
  check(!page.url().includes(token), `${actor}'s token is in the URL`);
}

/** Safe so far: no markup of a deployer ran, no CSP violation, no uncaught error. */
async function unharmed({ page, problems, actor }) {
  const state = await page.evaluate(() => ({
    pwned: typeof window.__pwned,
    violations: window.__cspViolations,
    images: [...document.querySelectorAll('img')].map((image) => image.getAttribute('src')),
    inlineScripts: [...document.querySelectorAll('script')].filter((script) => !script.src).length,
  }));
  check(state.pwned === 'undefined', `a deployer's script ran in ${actor}'s console: window.__pwned is set`);
  check(state.images.length === 0, `the page holds <img> elements a deployer wrote: ${state.images.join(', ')}`);
  check(state.inlineScripts === 0, 'the page holds an inline <script>');
  check(state.violations.length === 0, `Content-Security-Policy violations in ${actor}'s console: ${state.violations.join('; ')}`);
  check(problems.length === 0, `problems in ${actor}'s console: ${problems.join('; ')}`);
}

async function go(page, hash, title) {
  await page.evaluate((target) => {
    window.location.hash = target;
  }, hash);
  await heading(page, title);
}

async function navigate(page, link, title) {
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: link, exact: true }).click();
  await heading(page, title);
}

async function literal(page, text) {
  await page.getByText(text).first().waitFor({ state: 'visible' });
}

async function status(page, text) {
  await page.locator('#status').filter({ hasText: text }).waitFor();
}

// ---------------------------------------------------------------- the stories

async function viewer(browser) {
  const session = await open(browser, 'vic');
  const { page } = session;
  await screenshot(page, 'sign-in');
  await accessible(page, 'sign-in');
  await signIn(session);
  await heading(page, 'Models');
  // The model's description is a deployer's text holding markup: shown as text.
  await literal(page, XSS_IMG);
  await literal(page, XSS_SCRIPT);
  await screenshot(page, 'vic-models');
  await accessible(page, 'models');

  await page.getByRole('link', { name: MODEL, exact: true }).click();
  await heading(page, `Model ${MODEL}`);
  await accessible(page, 'model');
  await screenshot(page, 'vic-model');

  const versions = await api('vic', 'GET', `/api/v1/models/${MODEL}/versions`);
  const marked = versions.find((version) => version.lineage.intended_use === XSS_IMG);
  check(marked, `the seed has no version whose card holds ${XSS_IMG}`);
  await go(page, `#/models/${MODEL}/versions/${marked.version}`, `${MODEL} version ${marked.version}`);
  const card = page.locator('section').filter({ has: page.getByRole('heading', { name: 'Model card' }) });
  await card.getByText(XSS_IMG, { exact: true }).waitFor();
  await card.getByText(XSS_SCRIPT, { exact: true }).waitFor();
  // ... and in a document (JSON, so its quotes are escaped), and in its
  // transition's comment.
  const documents = page.locator('section').filter({ has: page.getByRole('heading', { name: 'Documents' }) });
  await documents.getByText(XSS_SCRIPT).first().waitFor();
  const history = page.locator('section').filter({ has: page.getByRole('heading', { name: 'Stage history' }) });
  await history.getByText(XSS_IMG).first().waitFor();
  await screenshot(page, 'vic-version-with-markup');
  await accessible(page, 'version');
  await unharmed(session);

  await navigate(page, 'Approvals', 'Approvals');
  await page.locator('article.card').first().waitFor();
  check(await page.getByRole('button', { name: 'Approve' }).count() === 0, 'a viewer is offered an Approve button');
  check(await page.getByRole('button', { name: 'Reject' }).count() === 0, 'a viewer is offered a Reject button');
  await page.getByText('Your role (viewer) may read them').waitFor();
  await screenshot(page, 'vic-approvals');
  await accessible(page, 'approvals (viewer)');

  await navigate(page, 'Traffic', 'Traffic');
  await accessible(page, 'traffic');
  await page.getByRole('link', { name: MODEL, exact: true }).click();
  await heading(page, `Traffic of ${MODEL}`);
  check(await page.getByRole('button', { name: 'Review the change' }).count() === 0, 'a viewer is offered the traffic editor');
  await unharmed(session);
  await tokenNowhere(session);
  await session.context.close();
}

async function approvers(browser) {
  const pending = await api('tom', 'GET', '/api/v1/transitions?status=pending');
  const mine = pending.find((transition) => transition.to_stage === 'production'
    && transition.reviews.some((review) => review.approval === 'business')
    && transition.missing_approvals.length === 1 && transition.missing_approvals[0] === 'technical');
  check(mine, `no pending production transition is waiting for tom's technical approval: ${JSON.stringify(pending)}`);
  const other = pending.find((transition) => transition.id !== mine.id && transition.reviews.length === 0);
  check(other, 'no second pending transition for bea to reject');

  const tom = await open(browser, 'tom');
  const { page } = tom;
  await signIn(tom);
  await navigate(page, 'Approvals', 'Approvals');
  const card = page.locator(`article[data-transition="${mine.id}"]`);
  await card.waitFor();
  await card.getByText('business approval by bea').waitFor();
  await card.getByText('technical approval').waitFor();
  await card.getByText('behavioural suite').waitFor();
  // The stage's gate, judged by the registry (transition_gates).
  await card.getByText('metric gate auc >= 0.85').waitFor();
  const gates = await api('tom', 'GET', `/api/v1/transitions/${mine.id}/gates`);
  check(gates.length === 1 && gates[0].passed, `the production gate passes: ${JSON.stringify(gates)}`);
  await screenshot(page, 'tom-approvals');
  await accessible(page, 'approvals (approver)');

  // The version's card and lineage, then back to the queue.
  await card.getByRole('link', { name: /card and lineage/ }).click();
  await heading(page, `${MODEL} version ${mine.version}`);
  const version = await api('tom', 'GET', `/api/v1/models/${MODEL}/versions/${mine.version}`);
  if (version.lineage.intended_use) {
    await literal(page, version.lineage.intended_use);
  }
  if (version.lineage.code_commit) {
    await page.locator('section').filter({ has: page.getByRole('heading', { name: 'Lineage' }) }).getByText(version.lineage.code_commit).waitFor();
  }
  await page.getByRole('heading', { name: 'Metrics' }).waitFor();
  await screenshot(page, 'tom-reads-the-card');
  await page.goBack();
  await heading(page, 'Approvals');

  const again = page.locator(`article[data-transition="${mine.id}"]`);
  await again.getByLabel('Approval to give').selectOption('technical');
  await again.getByLabel('Review comment').fill('offline evaluation holds up; latency fine');
  await again.getByRole('button', { name: 'Approve' }).click();
  await status(page, `Transition ${mine.id} approved by tom: applied`);
  await again.waitFor({ state: 'detached' });
  await screenshot(page, 'tom-approved');
  const applied = await api('tom', 'GET', `/api/v1/transitions/${mine.id}`);
  check(applied.status === 'applied', `transition ${mine.id} is ${applied.status} after tom's approval`);

  await go(page, `#/models/${MODEL}/versions/${mine.version}`, `${MODEL} version ${mine.version}`);
  const history = page.locator('section').filter({ has: page.getByRole('heading', { name: 'Stage history' }) });
  await history.getByText('offline evaluation holds up; latency fine').waitFor();
  await history.getByText('staging → production').first().waitFor();
  await page.locator('dd').getByText('production', { exact: true }).first().waitFor();
  await screenshot(page, 'tom-stage-history');
  await unharmed(tom);
  await tom.context.close();

  // bea works from the keyboard alone: Tab to each control, type, Enter.
  const bea = await open(browser, 'bea');
  const keys = bea.page.keyboard;
  await tabTo(bea.page, bea.page.getByLabel('Registry token'));
  await keys.type(TOKENS.bea);
  await keys.press('Enter');
  await bea.page.locator('#session').filter({ hasText: 'Signed in as bea' }).waitFor();
  await tabTo(bea.page, bea.page.getByRole('link', { name: 'Approvals', exact: true }));
  await keys.press('Enter');
  await heading(bea.page, 'Approvals');
  const theirs = bea.page.locator(`article[data-transition="${other.id}"]`);
  await tabTo(bea.page, theirs.getByLabel('Review comment'));
  await keys.type('wait for the May data');
  await tabTo(bea.page, theirs.getByRole('button', { name: 'Reject' }));
  await keys.press('Enter');
  await status(bea.page, `Transition ${other.id} rejected by bea`);
  await theirs.waitFor({ state: 'detached' });
  await screenshot(bea.page, 'bea-rejected');
  const rejected = await api('bea', 'GET', `/api/v1/transitions/${other.id}`);
  check(rejected.status === 'rejected', `transition ${other.id} is ${rejected.status} after bea's rejection`);
  check(rejected.reviews.some((review) => review.actor === 'bea' && review.comment === 'wait for the May data'), 'bea\'s comment is not on the transition');
  await unharmed(bea);
  await bea.context.close();
}

/** Fills the traffic editor's weights and confirms; returns the confirmation panel. */
async function proposeWeights(page, weights, reason) {
  for (const [version, weight] of Object.entries(weights)) {
    await page.getByLabel(`Weight of version ${version} (%)`).fill(String(weight));
  }
  await page.getByLabel('Reason for the change').fill(reason);
  await page.getByRole('button', { name: 'Review the change' }).click();
  const panel = page.locator('.confirm-panel');
  await panel.getByRole('heading', { name: 'Confirm the change' }).waitFor();
  return panel;
}

async function releaseEngineer(browser) {
  const dora = await open(browser, 'dora');
  const { page } = dora;
  await signIn(dora);
  await navigate(page, 'Traffic', 'Traffic');
  await page.getByRole('link', { name: MODEL, exact: true }).click();
  await heading(page, `Traffic of ${MODEL}`);
  const start = await api('dora', 'GET', `/api/v1/deployments/${MODEL}`);
  check(start.targets.length === 2, `the seeded deployment has ${start.targets.length} targets, expected 2`);
  const [first, second] = start.targets.map((target) => target.version);
  if (start.sticky_header) {
    await page.locator('dd').getByText(start.sticky_header, { exact: true }).first().waitFor();
  }
  await screenshot(page, 'dora-traffic');
  await accessible(page, 'traffic of a model');

  // A guarded edit: the confirmation shows the diff; the save names the revision.
  let panel = await proposeWeights(page, { [first]: 80, [second]: 20 }, 'more traffic to the new version');
  const diff = panel.locator('table.diff');
  await diff.getByRole('row').filter({ hasText: `weight of version ${first}` }).filter({ hasText: `${start.targets[0].weight}%` }).filter({ hasText: '80%' }).waitFor();
  await diff.getByRole('row').filter({ hasText: `weight of version ${second}` }).filter({ hasText: '20%' }).waitFor();
  await screenshot(page, 'dora-confirm-diff');
  await accessible(page, 'traffic confirmation');
  await panel.getByRole('button', { name: `Save, if still at revision ${start.revision}` }).click();
  await status(page, `Saved: the traffic of ${MODEL} is at revision`);
  const saved = await api('dora', 'GET', `/api/v1/deployments/${MODEL}`);
  check(saved.revision > start.revision, 'the save did not move the revision');
  check(JSON.stringify(saved.targets) === JSON.stringify([{ version: first, weight: 80 }, { version: second, weight: 20 }]), `saved targets are ${JSON.stringify(saved.targets)}`);
  check(saved.sticky_header === start.sticky_header && saved.contract === start.contract && saved.log_sample_rate === start.log_sample_rate,
    'the edit lost settings it did not touch');
  const history = page.locator('section').filter({ has: page.getByRole('heading', { name: 'History' }) });
  await history.getByRole('heading', { name: `Revision ${saved.revision} by dora` }).waitFor();
  await history.getByText('more traffic to the new version').first().waitFor();
  await screenshot(page, 'dora-saved-with-history');

  // A stale edit: the deployment changes behind dora's back; the registry refuses hers.
  const behind = { ...saved, targets: [{ version: first, weight: 70 }, { version: second, weight: 30 }], if_revision: saved.revision, reason: 'changed behind dora\'s back' };
  for (const field of ['model', 'revision', 'versions', 'updated_at', 'updated_by']) {
    delete behind[field];
  }
  const moved = await api('admin', 'PUT', `/api/v1/deployments/${MODEL}`, behind);
  panel = await proposeWeights(page, { [first]: 60, [second]: 40 }, 'even more');
  await panel.getByRole('button', { name: `Save, if still at revision ${saved.revision}` }).click();
  const conflict = `the deployment of '${MODEL}' is at revision ${moved.revision}, not ${saved.revision}`;
  await page.locator('#alert').filter({ hasText: conflict }).waitFor();
  await panel.getByText(conflict).waitFor();
  await screenshot(page, 'dora-stale-edit-refused');
  const after = await api('dora', 'GET', `/api/v1/deployments/${MODEL}`);
  check(after.revision === moved.revision && after.targets[0].weight === 70, 'the stale edit changed the deployment');
  await panel.getByRole('button', { name: 'Reload the deployment' }).click();
  await page.getByRole('heading', { name: `Revision ${moved.revision} by admin` }).waitFor();

  // All traffic on the stable version, then a rollout of the other.
  panel = await proposeWeights(page, { [first]: 100, [second]: 0 }, 'back to one version before the rollout');
  await panel.getByRole('button', { name: `Save, if still at revision ${moved.revision}` }).click();
  await status(page, 'Saved');

  // The shortest interval the registry takes: two of the slowest gateway's reports.
  const fleet = await api('dora', 'GET', '/api/v1/gateways');
  const intervalMs = Math.max(2000, ...fleet.gateways.map((gateway) => 2 * gateway.interval_ms));
  await page.getByRole('link', { name: 'Rollout', exact: true }).click();
  await heading(page, `Rollout of ${MODEL}`);
  await page.getByLabel('Canary version').selectOption(String(second));
  // Steps enough that the rollout is still running when dora pauses it:
  // the heartbeat gateway reports healthy traffic, so intervals pass.
  await page.getByLabel('Step weights (%)').fill('10, 20, 30, 40, 50, 60, 70, 80');
  await page.getByLabel('Interval (ms)').fill(String(intervalMs));
  await page.getByRole('button', { name: 'Start the rollout' }).click();
  await status(page, `Rollout of ${MODEL} started: version ${second} at 10%`);
  const live = page.locator('.rollout-live');
  await live.getByText('progressing', { exact: true }).waitFor();
  await live.locator('[aria-current="step"]').filter({ hasText: '10%' }).waitFor();
  // The page refreshes itself: an interval the registry judged on the
  // canary's measured traffic appears, passed.
  await live.locator('table.intervals tbody tr').filter({ hasText: 'passed' }).first().waitFor({ timeout: 3 * intervalMs + 15000 });
  await screenshot(page, 'dora-rollout-live');
  await accessible(page, 'rollout');
  await live.getByRole('button', { name: 'Pause' }).click();
  await live.getByText('paused', { exact: true }).waitFor();
  await screenshot(page, 'dora-rollout-paused');
  await live.getByRole('button', { name: 'Resume' }).click();
  await live.getByText('progressing', { exact: true }).waitFor();
  await live.getByRole('button', { name: 'Abort…' }).click();
  await live.getByRole('button', { name: `Confirm abort: version ${first} takes all traffic back` }).click();
  await live.getByText('aborted', { exact: true }).waitFor();
  const rollout = await api('dora', 'GET', `/api/v1/rollouts/${MODEL}`);
  check(rollout.status === 'aborted', `the rollout is ${rollout.status} after abort`);
  await screenshot(page, 'dora-rollout-aborted');

  await page.getByRole('link', { name: 'Monitoring', exact: true }).last().click();
  await heading(page, `Monitoring of ${MODEL}`);
  const plots = page.locator('svg.plot');
  await plots.first().waitFor();
  const described = await plots.evaluateAll((svgs) => svgs.map((svg) => ({
    title: svg.querySelector('title')?.textContent || '',
    desc: svg.querySelector('desc')?.textContent || '',
    label: svg.getAttribute('aria-labelledby'),
    role: svg.getAttribute('role'),
    lines: svg.querySelectorAll('path.line').length,
    dots: svg.querySelectorAll('circle.dot').length,
    over: svg.querySelectorAll('circle.dot-over').length,
  })));
  check(described.length >= 8, `${described.length} drift plots, expected one per profiled feature`);
  for (const plot of described) {
    check(plot.title && plot.desc && plot.role === 'img' && plot.label, `a plot lacks its title, summary or role: ${JSON.stringify(plot)}`);
  }
  const age = described.find((plot) => plot.title === 'PSI of age over time');
  check(age && age.lines === 1, `no line in the plot of age's drift: ${JSON.stringify(age)}`);
  // The seeded ages shift from the fifth report on: each bucket is its own
  // window (the registry's report `ago_ms` before now), so the early buckets
  // sit under the threshold and the late ones over it.
  check(age.dots >= 5 && age.over >= 1 && age.over < age.dots, `age's drift does not rise over time: ${JSON.stringify(age)}`);
  await page.locator('.plot-summary').filter({ hasText: 'age:' }).first().waitFor();
  await screenshot(page, 'dora-monitoring');
  await accessible(page, 'monitoring');

  await navigate(page, 'Audit log', 'Audit log');
  await page.getByLabel('Actor').fill('dora');
  await page.getByRole('button', { name: 'Apply the filters' }).click();
  await page.waitForFunction(() => window.location.hash.includes('actor=dora'));
  await page.locator('table.audit > tbody > tr').first().waitFor();
  const actors = await page.locator('table.audit > tbody > tr > td:nth-child(3)').allInnerTexts();
  check(actors.length > 0 && actors.every((actor) => actor === 'dora'), `the audit log filtered by actor dora shows ${JSON.stringify(actors)}`);
  await screenshot(page, 'dora-audit-by-actor');
  await accessible(page, 'audit log');
  await page.getByLabel('Kind of event').fill('deployment.*');
  await page.getByRole('button', { name: 'Apply the filters' }).click();
  await page.waitForFunction(() => window.location.hash.includes('action=deployment.'));
  await page.locator('table.audit > tbody > tr').first().waitFor();
  const kinds = await page.locator('table.audit > tbody > tr > td:nth-child(4)').allInnerTexts();
  check(kinds.length > 0 && kinds.every((kind) => kind.startsWith('deployment.')), `the audit log filtered by kind deployment.* shows ${JSON.stringify(kinds)}`);

  await navigate(page, 'Gateways', 'Gateways');
  await page.getByRole('table').first().waitFor();
  await screenshot(page, 'dora-gateways');
  await accessible(page, 'gateways');

  await navigate(page, 'Rollouts', 'Rollouts');
  await accessible(page, 'rollouts');
  await navigate(page, 'Monitoring', 'Monitoring');
  await unharmed(dora);
  await tokenNowhere(dora);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await heading(page, 'Sign in');
  await tokenNowhere(dora);
  await dora.context.close();
}

// ---------------------------------------------------------------- main

async function main() {
  const browser = await chromium.launch({ executablePath: args.chromium, headless: true, args: CHROMIUM_ARGS });
  const stories = [['a viewer', viewer], ['the approvers', approvers], ['the release engineer', releaseEngineer]];
  try {
    for (const [name, story] of stories) {
      log(`story: ${name}`);
      await story(browser);
    }
  } catch (err) {
    // What the page said when the step failed: its alert, and a picture.
    if (current && !current.isClosed()) {
      const alert = await current.locator('#alert').innerText().catch(() => '');
      if (alert.trim()) {
        log(`the console's alert said: ${alert.trim()}`);
      }
      await screenshot(current, 'FAILED').catch(() => {});
    }
    throw err;
  } finally {
    await browser.close();
  }
  for (const line of axeSummary) {
    log(`axe: ${line}`);
  }
  log(`passed: ${shots} screenshots in ${SHOTS}`);
}

main().catch((err) => {
  console.error(`walk: FAILED: ${err instanceof WalkFailure ? err.message : err.stack || err}`);
  process.exit(1);
});
