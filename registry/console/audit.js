// The audit log: every change to the registry, filtered by actor, kind and
// model, paged by event id, each with the fields it changed.

import * as api from './api.js';
import { field, h, table } from './dom.js';
import { DASH, code, heading, link, note, when } from './ui.js';

function flatten(value, prefix, into, depth) {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && depth < 3) {
    for (const [key, inner] of Object.entries(value)) {
      flatten(inner, prefix ? `${prefix}.${key}` : key, into, depth + 1);
    }
  } else {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    into.set(prefix || '(value)', text.length > 300 ? `${text.slice(0, 300)}…` : text);
  }
  return into;
}

function eventDiff(event) {
  const before = event.before ? flatten(event.before, '', new Map(), 0) : new Map();
  const after = event.after ? flatten(event.after, '', new Map(), 0) : new Map();
  const names = [...before.keys(), ...[...after.keys()].filter((name) => !before.has(name))];
  const rows = names
    .filter((name) => before.get(name) !== after.get(name))
    .slice(0, 40)
    .map((name) => [name, before.get(name) ?? DASH, after.get(name) ?? DASH]);
  return rows.length ? table(null, ['Field', 'Before', 'After'], rows, { rowHeaders: true, className: 'diff' }) : note('No field changed.');
}

export async function viewAudit(context) {
  const query = context.query;
  const filters = {
    actor: query.get('actor') || '',
    action: query.get('action') || '',
    model: query.get('model') || '',
    limit: Number(query.get('limit')) || 50,
    order: query.get('order') === 'asc' ? 'asc' : 'desc',
  };
  const since = Number(query.get('since')) || 0;
  const before = Number(query.get('before')) || null;
  const events = await api.call('list_events', {
    query: {
      actor: filters.actor, action: filters.action, model: filters.model, limit: filters.limit, order: filters.order,
      since: filters.order === 'asc' ? since : undefined,
      before: filters.order === 'desc' && before ? before : undefined,
    },
  });
  const hashWith = (extra) => {
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries({ ...filters, ...extra })) {
      if (value !== '' && value !== null && value !== undefined) {
        params.set(name, String(value));
      }
    }
    return `#/audit?${params.toString()}`;
  };
  const actor = h('input', { type: 'text', value: filters.actor, autocomplete: 'off', spellcheck: 'false' });
  const action = h('input', { type: 'text', value: filters.action, autocomplete: 'off', spellcheck: 'false' });
  const model = h('input', { type: 'text', value: filters.model, autocomplete: 'off', spellcheck: 'false' });
  const limit = h('select', null, [25, 50, 100, 200].map((value) => h('option', { value: String(value), selected: value === filters.limit }, String(value))));
  const order = h('select', null, [['desc', 'newest first'], ['asc', 'oldest first']].map(([value, text]) => h('option', { value, selected: value === filters.order }, text)));
  const form = h(
    'form',
    {
      class: 'filters',
      method: 'post',
      onsubmit: (event) => {
        event.preventDefault();
        filters.actor = actor.value.trim();
        filters.action = action.value.trim();
        filters.model = model.value.trim();
        filters.limit = Number(limit.value);
        filters.order = order.value;
        window.location.hash = hashWith({});
      },
    },
    field('Actor', actor),
    field('Kind of event', action, 'An action such as deployment.set, or a prefix ending in * such as rollout.*'),
    field('Model', model),
    field('Events per page', limit),
    field('Order', order),
    h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Apply the filters')),
  );
  const rows = events.map((event) => [
    String(event.id),
    when(event.at),
    event.actor,
    code(event.action),
    event.subject,
    event.reason || DASH,
    h('details', null, h('summary', null, 'Changes'), event.rule ? h('p', null, 'Allowed by: ', event.rule) : null, eventDiff(event)),
  ]);
  const ids = events.map((event) => event.id);
  const pages = [];
  if (filters.order === 'desc') {
    if (before) {
      pages.push(link(hashWith({}), 'Newest events'));
    }
    if (events.length === filters.limit) {
      pages.push(link(hashWith({ before: Math.min(...ids) }), 'Older events'));
    }
  } else {
    if (since) {
      pages.push(link(hashWith({ since: 0 }), 'Oldest events'));
    }
    if (events.length === filters.limit) {
      pages.push(link(hashWith({ since: Math.max(...ids) }), 'Newer events'));
    }
  }
  return [
    heading('Audit log'),
    h('p', null, 'Every change to the registry, with who made it and why.'),
    form,
    rows.length
      ? table(`${events.length} event${events.length === 1 ? '' : 's'}`, ['Event', 'When', 'Actor', 'Kind', 'Subject', 'Reason', 'Details'], rows, { rowHeaders: true, className: 'audit' })
      : note('No event matches these filters.'),
    pages.length ? h('nav', { 'aria-label': 'Audit log pages', class: 'pages' }, pages) : null,
  ];
}
