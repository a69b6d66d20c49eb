// The rollouts area: a model's latest rollout (steps, judged intervals,
// evidence, policy), refreshed while shown, with the buttons that pause,
// resume, promote or abort it, and the form that starts one.

import * as api from './api.js';
import { facts, field, h, mount, route, table } from './dom.js';
import {
  DASH, chooseModel, clearMessages, fmt, heading, link, modelLinks, note, percent, say, section, showError, statusBadge,
  stepsOf, subsection, when,
} from './ui.js';

const ROLLOUT_REFRESH_MS = 3000;

/** `#/rollouts` without a model. */
export function viewRolloutModels() {
  return chooseModel('rollouts', 'Rollouts', 'Follow or start the rollout of a model.');
}

const ACTIVE = new Set(['progressing', 'paused', 'awaiting_promotion']);

function rolloutState(rollout, model, actions) {
  const steps = stepsOf(rollout.policy);
  const intervals = [...rollout.intervals].reverse();
  const rate = (mine, stable) => (mine === null || mine === undefined ? DASH : `${percent(mine)} (stable ${percent(stable)})`);
  return [
    facts([
      ['Status', statusBadge(rollout.status)],
      ['Canary', link(route('models', model, 'versions', rollout.canary), `version ${rollout.canary}`)],
      ['Stable', link(route('models', model, 'versions', rollout.stable), `version ${rollout.stable}`)],
      ['Canary weight', `${rollout.canary_weight}%`],
      ['Failed intervals', `${rollout.failed_intervals} of ${rollout.policy.threshold} allowed before a rollback`],
      ['Inconclusive in a row', String(rollout.inconclusive_in_a_row ?? 0)],
      ['Started', [when(rollout.started_at), ` by ${rollout.started_by}`]],
      ['Last change', when(rollout.updated_at)],
    ]),
    actions,
    subsection(
      'Steps',
      h('ol', { class: 'steps' }, steps.map((weight, index) => {
        const state = index < rollout.step || rollout.status === 'promoted'
          ? 'done'
          : index === rollout.step && ACTIVE.has(rollout.status) ? 'current' : 'to come';
        return h('li', { class: `step step-${state.replace(' ', '-')}`, 'aria-current': state === 'current' ? 'step' : null }, `${weight}% `, h('span', { class: 'step-state' }, `(${state})`));
      })),
    ),
    subsection(
      'Intervals',
      intervals.length
        ? table(null, ['Ended', 'Canary weight', 'Canary requests', 'Error rate', 'Engine refusals', 'Non-finite rows', 'p99 latency', 'Shadow disagreement', 'Verdict', 'Reasons'], intervals.map((interval) => [
          when(interval.ended_at),
          `${interval.canary_weight}%`,
          String(interval.canary_requests),
          rate(interval.error_rate, interval.stable_error_rate),
          rate(interval.engine_refused_rate, interval.stable_engine_refused_rate),
          rate(interval.nonfinite_rate, interval.stable_nonfinite_rate),
          interval.p99_ms === null || interval.p99_ms === undefined ? DASH : `${fmt(interval.p99_ms)} ms (stable ${fmt(interval.stable_p99_ms)} ms)`,
          interval.shadow_disagreement === null || interval.shadow_disagreement === undefined ? DASH : percent(interval.shadow_disagreement),
          [statusBadge(interval.verdict), interval.conclusive ? ' (conclusive)' : ''],
          interval.reasons.length ? h('ul', { class: 'plain' }, interval.reasons.map((reason) => h('li', null, reason))) : DASH,
        ]), { className: 'intervals' })
        : note('No interval has been judged yet.'),
    ),
    subsection(
      'Evidence of the sequential tests',
      rollout.evidence?.classes?.length
        ? table(null, ['Test', 'Canary bad / trials', 'Stable bad / trials', 'Score (1 rolls back)'], rollout.evidence.classes.map((evidence) => [
          evidence.class,
          `${fmt(evidence.canary_events)} / ${fmt(evidence.canary_trials)}`,
          `${fmt(evidence.stable_events)} / ${fmt(evidence.stable_trials)}`,
          fmt(evidence.score, 3),
        ]), { rowHeaders: true })
        : note('No evidence yet.'),
    ),
    subsection('Policy', facts(Object.entries(rollout.policy)
      .filter(([, value]) => value !== null && value !== undefined)
      .map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : fmt(value)]))),
  ];
}

/** The buttons of an active rollout, for those who `may` deploy. */
function rolloutActions(rollout, model, state, may) {
  if (!may('deploy') || !ACTIVE.has(rollout.status)) {
    return null;
  }
  const run = async (action, button) => {
    button.disabled = true;
    try {
      const after = await api.call('rollout_action', { pathParams: { model, action } });
      state.confirmingAbort = false;
      clearMessages();
      say(`Rollout of ${model}: ${action} done, it is ${after.status.replace(/_/g, ' ')}.`);
      await state.reload(true);
    } catch (err) {
      showError(err);
      button.disabled = false;
    }
  };
  const button = (text, action, tone) => {
    const element = h('button', { type: 'button', class: tone || null }, text);
    element.addEventListener('click', () => run(action, element));
    return element;
  };
  const buttons = [];
  if (rollout.status === 'progressing' || rollout.status === 'awaiting_promotion') {
    buttons.push(button('Pause', 'pause', 'secondary'));
  }
  if (rollout.status === 'paused') {
    buttons.push(button('Resume', 'resume'));
  }
  buttons.push(button('Promote', 'promote'));
  if (state.confirmingAbort) {
    buttons.push(
      button(`Confirm abort: version ${rollout.stable} takes all traffic back`, 'abort', 'danger'),
      h('button', {
        type: 'button',
        class: 'secondary',
        onclick: () => {
          state.confirmingAbort = false;
          state.reload(true);
        },
      }, 'Keep the rollout'),
    );
  } else {
    buttons.push(h('button', {
      type: 'button',
      class: 'danger',
      onclick: () => {
        state.confirmingAbort = true;
        state.reload(true);
      },
    }, 'Abort…'));
  }
  return h('div', { class: 'buttons', role: 'group', 'aria-label': 'Rollout actions' }, buttons);
}

function startRolloutForm(model, versions, deployment, state) {
  const stable = deployment?.targets?.find((target) => target.weight > 0)?.version;
  const canary = h('select', { name: 'canary' }, versions
    .filter((version) => version.version !== stable && ['staging', 'production'].includes(version.stage))
    .map((version) => h('option', { value: String(version.version) }, `version ${version.version} (${version.stage})`)));
  const steps = h('input', { type: 'text', value: '10, 25, 50', autocomplete: 'off' });
  const interval = h('input', { type: 'number', min: '1', step: '1', value: '60000' });
  const minRequests = h('input', { type: 'number', min: '0', step: '1', value: '100' });
  const maxErrorRate = h('input', { type: 'text', inputmode: 'decimal', value: '0.01', autocomplete: 'off' });
  const threshold = h('input', { type: 'number', min: '1', step: '1', value: '3' });
  const submit = h('button', { type: 'submit' }, 'Start the rollout');
  return h(
    'form',
    {
      class: 'editor',
      method: 'post',
      onsubmit: async (event) => {
        event.preventDefault();
        const policy = {
          step_weights: steps.value.split(/[\s,]+/).filter(Boolean).map(Number),
          interval_ms: Number(interval.value),
          min_requests: Number(minRequests.value),
          threshold: Number(threshold.value),
        };
        if (maxErrorRate.value.trim()) {
          policy.max_error_rate = Number(maxErrorRate.value);
        }
        submit.disabled = true;
        try {
          const started = await api.call('start_rollout', { pathParams: { model }, body: { canary: Number(canary.value), policy } });
          clearMessages();
          say(`Rollout of ${model} started: version ${started.canary} at ${started.canary_weight}%.`);
          await state.reload(true);
        } catch (err) {
          showError(err);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('p', null, stable ? `Version ${stable} takes the traffic now; the canary takes each step's share of it.` : 'A rollout starts from a deployment with one version taking all traffic.'),
    field('Canary version', canary),
    field('Step weights (%)', steps, 'Ascending, separated by commas: the canary\'s share at each step.'),
    field('Interval (ms)', interval, 'How long each step is judged.'),
    field('Minimum canary requests per interval', minRequests),
    field('Largest error rate over the stable version\'s', maxErrorRate, 'From 0 to 1; empty: not checked.'),
    field('Failed intervals before a rollback', threshold),
    h('div', { class: 'buttons' }, submit),
  );
}

export async function viewRollout(context) {
  const [model] = context.params;
  const [versions, deployment, first] = await Promise.all([
    api.call('list_versions', { pathParams: { model } }),
    api.callOr404('get_deployment', { pathParams: { model } }),
    api.callOr404('get_rollout', { pathParams: { model } }),
  ]);
  const live = h('div', { class: 'rollout-live' });
  const refreshed = h('p', { class: 'hint' });
  const state = { confirmingAbort: false, shown: null, reload: null };
  const start = context.may('deploy') ? section('Start a rollout', startRolloutForm(model, versions, deployment, state)) : null;
  const draw = (rollout, force) => {
    const text = JSON.stringify(rollout);
    refreshed.textContent = `Refreshed every ${ROLLOUT_REFRESH_MS / 1000} seconds while shown; last at ${new Date().toLocaleTimeString()}.`;
    if (!force && text === state.shown) {
      return; // unchanged: keep the page (and the keyboard focus) as it is
    }
    state.shown = text;
    if (!rollout) {
      mount(live, note(`${model} has had no rollout.`));
    } else {
      mount(live, rolloutState(rollout, model, rolloutActions(rollout, model, state, context.may)));
    }
    if (start) {
      start.hidden = Boolean(rollout && ACTIVE.has(rollout.status));
    }
  };
  state.reload = async (force) => {
    const rollout = await api.callOr404('get_rollout', { pathParams: { model } });
    if (context.current()) {
      draw(rollout, force);
    }
  };
  draw(first, true);
  const timer = window.setInterval(() => {
    if (!document.hidden) {
      state.reload(false).catch((err) => {
        if (context.current()) {
          showError(err);
        }
      });
    }
  }, ROLLOUT_REFRESH_MS);
  context.leave(() => window.clearInterval(timer));
  return [heading(`Rollout of ${model}`), modelLinks(model, 'rollouts'), section('Latest rollout', refreshed, live), start];
}
