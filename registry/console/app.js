// The Sluice console: sign-in, the navigation and the hash router. Each
// area's views live in a module of their own:
//
//   #/models, #/models/{m}, #/models/{m}/versions/{v}   models.js: models, versions, cards, lineage
//   #/approvals                                          approvals.js: pending transitions, review by role
//   #/traffic, #/traffic/{m}                             traffic.js: deployments, history, guarded edit
//   #/rollouts/{m}                                       rollouts.js: a live rollout and its buttons
//   #/monitoring/{m}                                     monitoring.js: drift plots, performance, slices, triggers
//   #/audit, #/fleet                                     audit.js, fleet.js: the audit log, the gateways
//
// Imports point one way: this file → the views → ui.js (shared helpers) →
// api.js, dom.js, plot.js. A view gets what it needs of the session through
// the context `render` hands it, and never imports another view.
//
// Every call goes through api.js (operations of /openapi.json); every node
// is made by dom.js, which never parses text as HTML. The registry decides
// what a role may do: buttons shown by role are a courtesy, not the check.

import * as api from './api.js';
import { field, h, mount } from './dom.js';
import { clearMessages, heading, link, say, showError } from './ui.js';
import { viewApprovals } from './approvals.js';
import { viewAudit } from './audit.js';
import { viewFleet } from './fleet.js';
import { viewModel, viewModels, viewVersion } from './models.js';
import { viewMonitoring, viewMonitoringModels } from './monitoring.js';
import { viewRollout, viewRolloutModels } from './rollouts.js';
import { viewDeployment, viewTraffic } from './traffic.js';

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const session = document.getElementById('session');

let identity = null;
let leaving = [];
let generation = 0;

const MAY = { review: ['approver', 'admin'], deploy: ['deployer', 'admin'] };

function may(permission) {
  return identity !== null && MAY[permission].includes(identity.role);
}

const NAV = [
  ['models', 'Models'],
  ['approvals', 'Approvals'],
  ['traffic', 'Traffic'],
  ['rollouts', 'Rollouts'],
  ['monitoring', 'Monitoring'],
  ['audit', 'Audit log'],
  ['fleet', 'Gateways'],
];

function renderNav(current) {
  nav.hidden = false;
  mount(
    nav,
    h('ul', null, NAV.map(([name, text]) =>
      h('li', null, h('a', { href: `#/${name}`, 'aria-current': name === current ? 'page' : null }, text)))),
  );
}

function renderSession() {
  mount(
    session,
    h('span', { class: 'who' }, 'Signed in as ', h('strong', null, identity.actor), ` (${identity.role})`),
    h('button', { type: 'button', class: 'secondary', onclick: signOut }, 'Sign out'),
  );
}

function show(content, focus) {
  mount(view, content);
  const title = view.querySelector('h1');
  document.title = title ? `${title.textContent} · Sluice console` : 'Sluice console';
  if (focus && title) {
    title.focus();
  }
}

function leaveView() {
  for (const fn of leaving.splice(0)) {
    fn();
  }
}

function renderLogin() {
  leaveView();
  generation += 1;
  identity = null;
  nav.hidden = true;
  mount(nav);
  mount(session);
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true });
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'login',
      method: 'post',
      onsubmit: (event) => {
        event.preventDefault();
        signIn(input, button);
      },
    },
    field('Registry token', input, 'A token of the registry API. The console keeps it in this tab\'s memory only: reloading the page or signing out forgets it.'),
    button,
  );
  show([
    heading('Sign in to the Sluice console'),
    h('p', null, 'Review stage transitions, change traffic, follow rollouts and watch the models in production, with the same token and role as the API.'),
    form,
  ], true);
}

async function signIn(input, button) {
  const value = input.value.trim();
  input.value = '';
  if (!value) {
    showError(new Error('enter a token'));
    input.focus();
    return;
  }
  button.disabled = true;
  api.setToken(value);
  try {
    identity = await api.call('whoami');
  } catch (err) {
    api.forgetToken();
    identity = null;
    button.disabled = false;
    showError(err);
    input.focus();
    return;
  }
  clearMessages();
  renderSession();
  if (window.location.hash.startsWith('#/')) {
    render({ navigated: true });
  } else {
    window.location.hash = '#/models';
  }
}

function signOut() {
  api.forgetToken();
  clearMessages();
  renderLogin();
  say('Signed out: the console has forgotten the token.');
}

const ROUTES = [
  ['models', /^models$/, viewModels],
  ['models', /^models\/([^/]+)$/, viewModel],
  ['models', /^models\/([^/]+)\/versions\/([^/]+)$/, viewVersion],
  ['approvals', /^approvals$/, viewApprovals],
  ['traffic', /^traffic$/, viewTraffic],
  ['traffic', /^traffic\/([^/]+)$/, viewDeployment],
  ['rollouts', /^rollouts$/, viewRolloutModels],
  ['rollouts', /^rollouts\/([^/]+)$/, viewRollout],
  ['monitoring', /^monitoring$/, viewMonitoringModels],
  ['monitoring', /^monitoring\/([^/]+)$/, viewMonitoring],
  ['audit', /^audit$/, viewAudit],
  ['fleet', /^fleet$/, viewFleet],
];

/** Shows the route in the hash. `navigated`: a new page (messages cleared, focus on its title). */
async function render({ navigated = false, focus = navigated } = {}) {
  const hash = window.location.hash;
  if (hash && !hash.startsWith('#/')) {
    return; // an anchor in the page, such as the skip link
  }
  leaveView();
  generation += 1;
  const mine = generation;
  if (navigated) {
    clearMessages();
  }
  if (!api.signedIn()) {
    renderLogin();
    return;
  }
  const [path, search] = (hash.slice(2) || 'models').split('?');
  let found = null;
  for (const [area, pattern, handler] of ROUTES) {
    const match = pattern.exec(path);
    if (match) {
      found = { area, handler, match };
      break;
    }
  }
  renderNav(found?.area);
  let params = null;
  try {
    params = found ? found.match.slice(1).map(decodeURIComponent) : null;
  } catch {
    params = null;
  }
  if (params === null) {
    show([heading('No such page'), h('p', null, 'The console has no page at this address. ', link('#/models', 'See the models.'))], focus);
    return;
  }
  // All a view learns of the console: its route, the signed-in actor, and
  // how to tell it is still shown, clean up when left, and redraw itself.
  const context = {
    params,
    query: new URLSearchParams(search || ''),
    identity,
    may,
    current: () => mine === generation,
    leave: (fn) => (mine === generation ? leaving.push(fn) : fn()),
    refresh: () => render({ focus: true }),
  };
  if (navigated) {
    mount(view, h('p', { class: 'loading' }, 'Loading…'));
  }
  try {
    const content = await found.handler(context);
    if (context.current()) {
      show(content, focus);
    }
  } catch (err) {
    if (!context.current()) {
      return;
    }
    if (err instanceof api.ApiError && err.status === 401) {
      api.forgetToken();
      renderLogin();
      showError(err);
      return;
    }
    show([heading('This page could not be loaded')], focus);
    showError(err);
  }
}

async function start() {
  try {
    await api.load();
  } catch (err) {
    show([heading('The console cannot start')], true);
    showError(err);
    return;
  }
  window.addEventListener('hashchange', () => render({ navigated: true }));
  render({ navigated: true });
}

start();
