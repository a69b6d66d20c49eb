// The traffic area: every deployment, and a model's traffic with its
// history (each change as a diff, any two revisions compared) and the
// guarded edit, which shows the diff and saves only `if_revision` matches.

import * as api from './api.js';
import { facts, field, h, mount, route, table, uniqueId } from './dom.js';
import {
  DASH, clearMessages, code, errorText, fmt, heading, keyValues, link, modelLinks, note, percent, say, section,
  showError, stageBadge, subsection, when,
} from './ui.js';

const SPEC_FIELDS = ['targets', 'shadow', 'sticky_header', 'rollout', 'log_sample_rate', 'batching', 'contract', 'warmup'];

/** The traffic spec of a deployment (or of an audit event's snapshot): what a PUT sends back. */
function specOf(deployment) {
  const spec = { targets: [] };
  for (const name of SPEC_FIELDS) {
    if (deployment && deployment[name] !== undefined && deployment[name] !== null) {
      spec[name] = structuredClone(deployment[name]);
    }
  }
  return spec;
}

/** A spec as named settings, for showing and diffing. */
function settingsOf(spec) {
  const settings = new Map();
  for (const target of spec?.targets || []) {
    settings.set(`weight of version ${target.version}`, `${target.weight}%`);
  }
  if (spec?.shadow) {
    settings.set('shadow version', String(spec.shadow.version));
    settings.set('shadow sample rate', fmt(spec.shadow.sample_rate));
  }
  if (spec?.sticky_header) {
    settings.set('sticky header', spec.sticky_header);
  }
  if (spec?.log_sample_rate !== undefined && spec?.log_sample_rate !== null) {
    settings.set('prediction log (share with inputs)', fmt(spec.log_sample_rate));
  }
  if (spec?.contract) {
    settings.set('contract', spec.contract);
  }
  for (const [name, value] of Object.entries(spec?.batching || {})) {
    settings.set(`batching ${name}`, JSON.stringify(value));
  }
  if (spec?.warmup) {
    settings.set('warm-up', JSON.stringify(spec.warmup));
  }
  if (spec?.rollout) {
    settings.set('rollout', JSON.stringify(spec.rollout));
  }
  return settings;
}

/** `[setting, before, after]` of every setting that differs. */
function diffSpecs(before, after) {
  const old = settingsOf(before);
  const next = settingsOf(after);
  const names = [...old.keys(), ...[...next.keys()].filter((name) => !old.has(name))];
  return names
    .filter((name) => old.get(name) !== next.get(name))
    .map((name) => [name, old.get(name) ?? DASH, next.get(name) ?? DASH]);
}

function diffTable(caption, rows) {
  if (rows.length === 0) {
    return note('No traffic setting changed.');
  }
  return table(caption, ['Setting', 'Before', 'After'], rows, { rowHeaders: true, className: 'diff' });
}

function describeLogging(spec) {
  if (spec.log_sample_rate === undefined || spec.log_sample_rate === null) {
    return 'off';
  }
  return `every prediction, ${percent(spec.log_sample_rate)} of them with their inputs`;
}

function currentTraffic(deployment, versions) {
  const stageOf = new Map(versions.map((version) => [version.version, version.stage]));
  return [
    facts([
      ['Revision', String(deployment.revision)],
      ['Changed', [when(deployment.updated_at), ` by ${deployment.updated_by}`]],
    ]),
    table('Targets', ['Version', 'Stage', 'Weight'], deployment.targets.map((target) => [
      link(route('models', deployment.model, 'versions', target.version), `version ${target.version}`),
      stageOf.has(target.version) ? stageBadge(stageOf.get(target.version)) : DASH,
      `${target.weight}%`,
    ]), { rowHeaders: true }),
    facts([
      ['Shadow', deployment.shadow ? `version ${deployment.shadow.version}, ${percent(deployment.shadow.sample_rate)} of requests mirrored` : 'none'],
      ['Sticky header', deployment.sticky_header ? code(deployment.sticky_header) : 'none'],
      ['Prediction log', describeLogging(deployment)],
      ['Data contract', deployment.contract ? `checked: ${deployment.contract}` : 'not checked'],
      ['Dynamic batching', deployment.batching ? keyValues(deployment.batching) : 'off'],
      ['Warm-up', deployment.warmup ? 'configured' : 'default'],
      ['Rollout', deployment.rollout ? [`canary version ${deployment.rollout.canary ?? '?'} — `, link(route('rollouts', deployment.model), 'follow the rollout')] : 'none'],
    ]),
  ];
}

export async function viewTraffic() {
  const all = await api.call('list_deployments');
  const rows = all.deployments.map((deployment) => [
    link(route('traffic', deployment.model), deployment.model),
    String(deployment.revision),
    deployment.targets.map((target) => `v${target.version} ${target.weight}%`).join(', '),
    deployment.shadow ? `v${deployment.shadow.version} at ${percent(deployment.shadow.sample_rate)}` : DASH,
    deployment.sticky_header || DASH,
    describeLogging(deployment),
    deployment.contract || DASH,
    [when(deployment.updated_at), ` by ${deployment.updated_by}`],
  ]);
  return [
    heading('Traffic'),
    h('p', null, `Every deployment, at registry revision ${all.revision}.`),
    rows.length
      ? table(null, ['Model', 'Revision', 'Targets', 'Shadow', 'Sticky header', 'Prediction log', 'Contract', 'Changed'], rows, { rowHeaders: true })
      : note('Nothing is deployed.'),
  ];
}

function trafficEditor(model, deployment, versions, context) {
  const base = specOf(deployment);
  const revision = deployment ? deployment.revision : 0;
  const targets = base.targets.map((target) => ({ ...target }));
  const targetRows = h('div', { class: 'targets' });
  const total = h('output', { class: 'total' });
  const addSelect = h('select', { name: 'add-version' });
  const confirmation = h('div', { class: 'confirmation' });

  const updateTotal = () => {
    const sum = targets.reduce((acc, target) => acc + (Number.isFinite(target.weight) ? target.weight : 0), 0);
    total.value = `Weights add up to ${sum}%${sum === 100 ? '' : ' (they must add up to 100)'}`;
  };
  const drawTargets = () => {
    mount(targetRows, targets.map((target, index) => {
      const input = h('input', {
        type: 'number', min: '0', max: '100', step: '1', inputmode: 'numeric', value: String(target.weight),
        oninput: () => {
          target.weight = input.value === '' ? NaN : Number(input.value);
          updateTotal();
        },
      });
      return h(
        'div',
        { class: 'target' },
        field(`Weight of version ${target.version} (%)`, input),
        h('button', {
          type: 'button',
          class: 'secondary',
          onclick: () => {
            targets.splice(index, 1);
            drawTargets();
          },
        }, `Remove version ${target.version}`),
      );
    }));
    const choices = versions.filter((version) => !targets.some((target) => target.version === version.version) && version.stage !== 'archived');
    mount(addSelect, choices.map((version) => h('option', { value: String(version.version) }, `version ${version.version} (${version.stage})`)));
    updateTotal();
  };
  drawTargets();

  const shadowVersion = h('select', { name: 'shadow-version' },
    h('option', { value: '' }, 'none'),
    versions.filter((version) => version.stage !== 'archived').map((version) =>
      h('option', { value: String(version.version), selected: base.shadow?.version === version.version }, `version ${version.version}`)));
  const shadowRate = h('input', { type: 'number', min: '0', max: '1', step: '0.01', value: base.shadow ? String(base.shadow.sample_rate) : '0.05' });
  const sticky = h('input', { type: 'text', value: base.sticky_header || '', spellcheck: 'false', autocomplete: 'off' });
  const logging = h('input', { type: 'text', inputmode: 'decimal', value: base.log_sample_rate ?? '', autocomplete: 'off' });
  const contract = h('select', { name: 'contract' },
    [['', 'not checked'], ['observe', 'observe'], ['reject', 'reject']].map(([value, text]) =>
      h('option', { value, selected: (base.contract || '') === value }, text)));
  const reason = h('input', { type: 'text', autocomplete: 'off' });

  const proposed = () => {
    const spec = specOf(base);
    spec.targets = targets.map((target) => ({ version: target.version, weight: target.weight }));
    delete spec.shadow;
    if (shadowVersion.value !== '') {
      spec.shadow = { version: Number(shadowVersion.value), sample_rate: Number(shadowRate.value) };
    }
    delete spec.sticky_header;
    if (sticky.value.trim()) {
      spec.sticky_header = sticky.value.trim();
    }
    delete spec.log_sample_rate;
    if (String(logging.value).trim() !== '') {
      spec.log_sample_rate = Number(logging.value);
    }
    delete spec.contract;
    if (contract.value) {
      spec.contract = contract.value;
    }
    return spec;
  };

  const review = () => {
    const spec = proposed();
    const rows = diffSpecs(base, spec);
    const id = uniqueId('confirm');
    if (rows.length === 0) {
      mount(confirmation, note('Nothing changed: there is nothing to save.'));
      return;
    }
    const save = h('button', { type: 'button' }, `Save, if still at revision ${revision}`);
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const outcome = h('div', { class: 'outcome' });
    save.addEventListener('click', async () => {
      save.disabled = true;
      try {
        const body = { ...spec, if_revision: revision };
        if (reason.value.trim()) {
          body.reason = reason.value.trim();
        }
        const saved = await api.call('set_deployment', { pathParams: { model }, body });
        clearMessages();
        say(`Saved: the traffic of ${model} is at revision ${saved.revision}.`);
        context.refresh();
      } catch (err) {
        showError(err);
        mount(outcome, h('p', { class: 'error-inline' }, errorText(err)),
          h('button', { type: 'button', onclick: () => context.refresh() }, 'Reload the deployment'));
      }
    });
    cancel.addEventListener('click', () => mount(confirmation));
    mount(
      confirmation,
      h(
        'div',
        { class: 'confirm-panel', role: 'group', 'aria-labelledby': id },
        h('h3', { id, tabindex: '-1' }, 'Confirm the change'),
        h('p', null, `The registry applies it only if the deployment is still at revision ${revision}; if someone changed it since, it refuses and nothing changes.`),
        base.rollout ? note('A rollout is running: changing the traffic by hand aborts it at its next interval.') : null,
        diffTable(`Changes to the traffic of ${model}`, rows),
        reason.value.trim() ? h('p', null, 'Reason: ', h('q', null, reason.value.trim())) : h('p', null, 'No reason given.'),
        h('div', { class: 'buttons' }, save, cancel),
        outcome,
      ),
    );
    confirmation.querySelector('h3').focus();
  };

  return h(
    'form',
    {
      class: 'editor',
      method: 'post',
      onsubmit: (event) => {
        event.preventDefault();
        review();
      },
    },
    h('fieldset', null, h('legend', null, 'Targets'), targetRows, total,
      h('div', { class: 'inline-controls' },
        field('Add a version', addSelect),
        h('button', {
          type: 'button',
          class: 'secondary',
          onclick: () => {
            if (addSelect.value) {
              targets.push({ version: Number(addSelect.value), weight: 0 });
              drawTargets();
            }
          },
        }, 'Add as a target'))),
    h('fieldset', null, h('legend', null, 'Other settings'),
      field('Shadow version', shadowVersion),
      field('Shadow sample rate', shadowRate, 'From 0 to 1: the share of requests mirrored to the shadow.'),
      field('Sticky header', sticky, 'A request header whose value pins a caller to one version; empty for none.'),
      field('Prediction log sample rate', logging, 'From 0 to 1: the share of logged predictions kept with their inputs; empty: no prediction log.'),
      field('Data contract', contract)),
    field('Reason for the change', reason, 'Recorded in the audit log.'),
    h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Review the change')),
    confirmation,
  );
}

function historyView(model, events, deployment) {
  const snapshots = new Map();
  for (const event of events) {
    if (event.after && typeof event.after.revision === 'number') {
      snapshots.set(event.after.revision, event.after);
    }
  }
  if (deployment) {
    snapshots.set(deployment.revision, deployment);
  }
  const revisions = [...snapshots.keys()].sort((a, b) => a - b);
  const entries = events.map((event) => {
    const id = uniqueId('change');
    const title = event.action === 'deployment.delete'
      ? `Deleted by ${event.actor}`
      : `Revision ${event.after?.revision ?? '?'} by ${event.actor}`;
    return h(
      'li',
      { class: 'change' },
      h('h3', { id }, title),
      facts([
        ['When', when(event.at)],
        ['From revision', event.before ? String(event.before.revision) : 'none (the first deployment)'],
        ['Reason', event.reason ? h('q', null, event.reason) : null],
        ['Allowed by', event.rule],
      ]),
      diffTable(`What revision ${event.after?.revision ?? '?'} changed`, diffSpecs(event.before, event.after)),
    );
  });
  let compare = null;
  if (revisions.length >= 2) {
    const from = h('select', null, revisions.map((revision, index) => h('option', { value: String(revision), selected: index === revisions.length - 2 }, `revision ${revision}`)));
    const to = h('select', null, revisions.map((revision, index) => h('option', { value: String(revision), selected: index === revisions.length - 1 }, `revision ${revision}`)));
    const result = h('div', { class: 'compare-result' });
    const draw = () => mount(result, diffTable(`Revision ${from.value} against revision ${to.value}`, diffSpecs(snapshots.get(Number(from.value)), snapshots.get(Number(to.value)))));
    from.addEventListener('change', draw);
    to.addEventListener('change', draw);
    draw();
    compare = subsection('Compare two revisions', h('div', { class: 'inline-controls' }, field('From', from), field('To', to)), result);
  }
  return [
    compare,
    entries.length ? h('ol', { class: 'history' }, entries) : note(`No change of ${model}'s traffic is in the audit log.`),
  ];
}

export async function viewDeployment(context) {
  const [model] = context.params;
  const [deployment, versions, events] = await Promise.all([
    api.callOr404('get_deployment', { pathParams: { model } }),
    api.call('list_versions', { pathParams: { model } }),
    api.call('list_events', { query: { model, action: 'deployment.*', order: 'desc', limit: 100 } }),
  ]);
  const own = events.filter((event) => event.subject === model);
  return [
    heading(`Traffic of ${model}`),
    modelLinks(model, 'traffic'),
    section('Current traffic', deployment ? currentTraffic(deployment, versions) : note(`${model} has no deployment.`)),
    context.may('deploy')
      ? section('Change the traffic', trafficEditor(model, deployment, versions, context))
      : note(`Your role (${context.identity.role}) may read the traffic; changing it needs role deployer or admin.`),
    section('History', historyView(model, own, deployment)),
  ];
}
