// Shared view helpers: the page's two message regions, the formatting of
// numbers, durations and times, and the small pieces every view is built
// from (headings, sections, badges, links between a model's pages, the
// list of models to choose from). Views share through this file and never
// import one another; it knows nothing of routes or of the signed-in actor.

import * as api from './api.js';
import { badge, h, mount, route, uniqueId } from './dom.js';

/** What a table shows for a value that is absent. */
export const DASH = '—';

const alertRegion = document.getElementById('alert');
const statusRegion = document.getElementById('status');

// ---------------------------------------------------------------- messages

export function errorText(err) {
  if (err instanceof api.ApiError) {
    return err.status ? `${err.message} (HTTP ${err.status})` : err.message;
  }
  return `The console failed: ${err.message}`;
}

export function showError(err) {
  mount(statusRegion);
  mount(alertRegion, h('p', null, errorText(err)));
}

export function say(text) {
  mount(alertRegion);
  mount(statusRegion, h('p', null, text));
}

export function clearMessages() {
  mount(alertRegion);
  mount(statusRegion);
}

// ---------------------------------------------------------------- formatting

export function fmt(value, digits = 4) {
  if (value === null || value === undefined || value === '') {
    return DASH;
  }
  if (typeof value !== 'number') {
    return String(value);
  }
  if (Number.isInteger(value) || !Number.isFinite(value)) {
    return String(value);
  }
  return String(Number(value.toPrecision(digits)));
}

export function percent(value) {
  return value === null || value === undefined ? DASH : `${fmt(value * 100, 3)}%`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) {
    return DASH;
  }
  if (ms % 3600000 === 0) {
    return `${ms / 3600000} h`;
  }
  if (ms % 60000 === 0) {
    return `${ms / 60000} min`;
  }
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

export function when(iso) {
  if (!iso) {
    return DASH;
  }
  const text = String(iso).replace('T', ' ').replace(/(\.\d+)?Z$/, ' UTC');
  return h('time', { datetime: String(iso) }, text);
}

// ---------------------------------------------------------------- pieces of a page

export function link(href, text) {
  return h('a', { href }, text);
}

export function code(text) {
  return h('code', null, String(text));
}

export function note(text) {
  return h('p', { class: 'note' }, text);
}

export function section(title, ...children) {
  const id = uniqueId('section');
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), children);
}

export function subsection(title, ...children) {
  const id = uniqueId('subsection');
  return h('section', { 'aria-labelledby': id, class: 'sub' }, h('h3', { id }, title), children);
}

export function heading(text) {
  return h('h1', { tabindex: '-1' }, text);
}

const STAGE_TONES = { production: 'good', staging: 'info', archived: 'muted', none: 'plain' };

export function stageBadge(stage) {
  return badge(stage, STAGE_TONES[stage]);
}

const STATUS_TONES = {
  drifted: 'bad', warning: 'warn', ok: 'good', 'insufficient data': 'plain',
  pending: 'warn', applied: 'good', rejected: 'bad',
  progressing: 'info', paused: 'warn', awaiting_promotion: 'warn', promoted: 'good', rolled_back: 'bad', aborted: 'muted',
  passed: 'good', failed: 'bad', inconclusive: 'plain',
  dispatching: 'info', running: 'info', succeeded: 'good', expired: 'muted',
};

export function statusBadge(status) {
  return badge(String(status).replace(/_/g, ' '), STATUS_TONES[status]);
}

export function keyValues(object) {
  const entries = Object.entries(object || {});
  if (entries.length === 0) {
    return DASH;
  }
  return h('ul', { class: 'inline' }, entries.map(([key, value]) => h('li', null, code(key), ' ', fmt(value))));
}

// ---------------------------------------------------------------- shared by several areas

/** A version's recorded metrics on one line. */
export function metricsText(metrics) {
  const entries = Object.entries(metrics || {});
  return entries.length === 0 ? DASH : entries.map(([name, value]) => `${name} ${fmt(value)}`).join(', ');
}

/** Links between a model's pages; the page shown is marked current. */
export function modelLinks(model, current) {
  const item = (area, text) => h(
    'li',
    null,
    h('a', { href: route(area, model), 'aria-current': area === current ? 'page' : null }, text),
  );
  return h(
    'ul',
    { class: 'links', 'aria-label': `Pages of ${model}` },
    item('models', `Model ${model}`),
    item('traffic', 'Traffic'),
    item('rollouts', 'Rollout'),
    item('monitoring', 'Monitoring'),
  );
}

/** The page of a model-scoped area reached without a model: a list to choose from. */
export async function chooseModel(area, title, text) {
  const models = await api.call('list_models');
  return [
    heading(title),
    h('p', null, text),
    models.length
      ? h('ul', { class: 'links-list' }, models.map((model) => h('li', null, link(route(area, model.name), model.name))))
      : note('No model is registered yet.'),
  ];
}

/** The weights a rollout policy steps through, given as a list or as a step up to a maximum. */
export function stepsOf(policy) {
  if (policy.step_weights && policy.step_weights.length) {
    return policy.step_weights;
  }
  const steps = [];
  if (policy.step_weight && policy.max_weight) {
    for (let weight = policy.step_weight; weight < policy.max_weight; weight += policy.step_weight) {
      steps.push(weight);
    }
    steps.push(policy.max_weight);
  }
  return steps;
}
