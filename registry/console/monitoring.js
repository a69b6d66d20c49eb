// The monitoring area: a version's drift now and over time (PSI per bucket,
// plotted), contract violations, realized performance, slices, and the
// model's training trigger policy and runs.

import * as api from './api.js';
import { badge, facts, field, h, route, table } from './dom.js';
import { linePlot } from './plot.js';
import {
  DASH, chooseModel, code, duration, fmt, heading, keyValues, modelLinks, note, percent, section, statusBadge, stepsOf,
  subsection, when,
} from './ui.js';

/** `#/monitoring` without a model. */
export function viewMonitoringModels() {
  return chooseModel('monitoring', 'Monitoring', 'Drift, realized performance, slices and training triggers of a model.');
}

/** A call's outcome as a value, so that one failed call leaves the other sections standing. */
function settle(promise) {
  return promise.then((value) => ({ value }), (error) => ({ error }));
}

/** The section's own note for a failed call; a 401 still signs out. */
function failed(result) {
  if (result.error instanceof api.ApiError && result.error.status === 401) {
    throw result.error;
  }
  if (!(result.error instanceof api.ApiError)) {
    throw result.error;
  }
  return note(result.error.message);
}

/**
 * Drift per column over time: one drift report per bucket, each the
 * registry's own (`model_drift` with `ago_ms`, so the browser needs no clock
 * of the registry's), oldest first. The registry keeps 30 minutes of
 * gateway statistics; a bucket nobody reported in has no point.
 */
async function driftOverTime(model, version, spanMinutes, buckets) {
  const bucketMs = Math.round((spanMinutes * 60000) / buckets);
  const reports = await Promise.all(Array.from({ length: buckets }, (_, index) => api.call('model_drift', {
    pathParams: { model },
    query: { version, window_ms: bucketMs, ago_ms: (buckets - 1 - index) * bucketMs },
  })));
  const minutes = spanMinutes / buckets;
  const label = (index) => {
    const ago = Math.round((buckets - 1 - index) * minutes * 10) / 10;
    return ago === 0 ? 'in the last bucket' : `${ago} min earlier`;
  };
  const x = (index) => -((buckets - 1 - index) * minutes);
  const series = (kind) => (reports[0]?.[kind] || []).map(({ name }) => ({
    kind,
    name,
    points: reports.map((report, index) => {
      const column = report[kind].find((entry) => entry.name === name);
      return { x: x(index), y: column && column.rows > 0 ? column.psi : null, label: label(index) };
    }),
  }));
  const contract = reports.map((report, index) => {
    const summary = report.contract;
    const worst = Object.values(summary?.violations || {}).reduce((acc, count) => Math.max(acc, count), 0);
    return { x: x(index), y: summary?.rows ? worst / summary.rows : null, label: label(index) };
  });
  const ticks = [0, 3, 6, buckets - 1].map((index) => ({
    x: x(index),
    text: index === buckets - 1 ? 'last' : `${fmt((buckets - 1 - index) * minutes, 3)} min earlier`,
  }));
  return { columns: [...series('features'), ...series('outputs')], contract, minutes, ticks };
}

function driftTable(caption, columns) {
  return table(caption, ['Column', 'Rows', 'PSI', 'Jensen-Shannon', 'KS', 'Chi-square p', 'Status'], columns.map((column) => [
    column.name,
    String(column.rows),
    fmt(column.psi, 3),
    fmt(column.js_distance, 3),
    fmt(column.ks, 3),
    fmt(column.chi_square_p, 3),
    statusBadge(column.status),
  ]), { rowHeaders: true });
}

function driftNow(report) {
  return [
    facts([
      ['Version', String(report.version)],
      ['Window', duration(report.window_ms)],
      ['Rows', String(report.rows)],
      ['Drifted share of features', `${percent(report.drifted_share)} (dataset drift from ${percent(report.thresholds.dataset_share)})`],
      ['Dataset drift', report.dataset_drift ? badge('yes', 'bad') : badge('no', 'good')],
      ['Prediction drift', report.prediction_drift ? badge('yes', 'bad') : badge('no', 'good')],
    ]),
    driftTable('Features', report.features),
    report.outputs.length ? driftTable('Outputs (prediction drift)', report.outputs) : null,
  ];
}

function driftPlots(timeline, threshold) {
  const ticks = timeline.ticks;
  const plots = (kind, title) => {
    const columns = timeline.columns.filter((column) => column.kind === kind);
    if (columns.length === 0) {
      return null;
    }
    return subsection(title, h('div', { class: 'plots' }, columns.map((column) => linePlot({
      title: `PSI of ${column.name} over time`,
      name: column.name,
      points: column.points,
      xTicks: ticks,
      threshold: { value: threshold, label: 'drift threshold' },
      unit: 'buckets with data',
    }))));
  };
  return [plots('features', 'Features'), plots('outputs', 'Outputs')];
}

function contractSection(report, timeline) {
  const summary = report?.contract;
  const checks = summary ? Object.entries(summary.violations) : [];
  const anyRows = timeline?.contract.some((point) => point.y !== null);
  return [
    summary
      ? [
        h('p', null, `${summary.rows} rows checked against the version's data contract in the last ${duration(report.window_ms)}.`),
        checks.length
          ? table(null, ['Check', 'Violations', 'Share of rows'], checks.map(([check, count]) => [check, String(count), percent(summary.rates[check])]), { rowHeaders: true })
          : note('No row broke the contract.'),
      ]
      : note('No gateway checked a data contract for this version in the window (the deployment\'s contract setting).'),
    anyRows
      ? h('div', { class: 'plots' }, linePlot({
        title: 'Worst contract check over time',
        name: 'share of checked rows breaking the worst check',
        points: timeline.contract,
        xTicks: timeline.ticks,
        threshold: null,
        unit: 'buckets',
      }))
      : null,
  ];
}

function performanceSection(performance) {
  return [
    facts([
      ['Version', String(performance.version)],
      ['Window', duration(performance.window_ms)],
      ['Judged as', performance.task || 'not known yet'],
      ['Joined rows', String(performance.joined)],
      ['Accuracy', performance.accuracy !== undefined ? fmt(performance.accuracy) : null],
      ['AUC', performance.auc !== undefined ? fmt(performance.auc) : null],
      ['Mean absolute error', performance.mae !== undefined ? fmt(performance.mae) : null],
    ]),
    performance.compared.length
      ? table('Realized against recorded', ['Metric', 'Realized', 'Recorded as', 'Recorded', 'Difference'], performance.compared.map((comparison) => [
        comparison.metric, fmt(comparison.realized), comparison.recorded_as, fmt(comparison.recorded), fmt(comparison.delta),
      ]), { rowHeaders: true })
      : note('No realized metric to compare with the recorded ones yet.'),
    h('p', null, 'Labels the join could not use since the registry started: ', keyValues(performance.unmatched)),
  ];
}

function slicesSection(report) {
  const metric = (value) => (value === undefined ? DASH : fmt(value, 3));
  return [
    facts([
      ['Slice feature', report.spec ? `${report.spec.feature}${report.spec.edges?.length ? ` (edges ${report.spec.edges.join(', ')})` : ''}` : 'none declared on the version\'s card'],
      ['Window', duration(report.window_ms)],
      ['Rows a slice needs to count', String(report.min_rows)],
    ]),
    report.slices.length
      ? table('Slices', ['Slice', 'Rows', 'Counted', 'Accuracy', 'AUC', 'False positive rate', 'False negative rate', 'MAE'], report.slices.map((slice) => [
        slice.slice, String(slice.rows), slice.counted ? 'yes' : 'no', metric(slice.accuracy), metric(slice.auc),
        metric(slice.false_positive_rate), metric(slice.false_negative_rate), metric(slice.mae),
      ]), { rowHeaders: true })
      : note('No labelled row has been joined for this version yet.'),
    report.gaps.length
      ? table('Gaps between slices', ['Metric', 'Gap', 'Highest', 'Lowest'], report.gaps.map((gap) => [gap.metric, fmt(gap.gap, 3), gap.highest, gap.lowest]), { rowHeaders: true })
      : note('No gap: fewer than two slices have enough rows.'),
  ];
}

function describeRule(rule) {
  switch (rule.kind) {
    case 'drift':
      return `dataset drift in ${rule.windows} windows in a row of ${duration(rule.window_ms)}`;
    case 'performance':
      return `${rule.metric} worse than ${rule.threshold} in ${rule.windows} windows in a row of ${duration(rule.window_ms)}, each with at least ${rule.min_labels} labels`;
    case 'contract':
      return `more than ${percent(rule.max_rate)} of checked rows breaking a contract check in ${rule.windows} windows in a row of ${duration(rule.window_ms)}`;
    case 'schedule':
      return `on schedule ${rule.cron} (UTC)`;
    default:
      return JSON.stringify(rule);
  }
}

function describeAction(action) {
  if (action?.webhook) {
    return ['webhook ', code(action.webhook.url), ` (${action.webhook.format || 'sluice'} format, up to ${action.webhook.max_attempts} attempts)`];
  }
  if (action?.command) {
    return ['command ', code(action.command.name), ' as declared in the registry\'s actions file'];
  }
  return JSON.stringify(action);
}

function triggersSection(state, runs) {
  const policy = state?.policy;
  return [
    policy
      ? [
        h('p', null, 'Rules, judged on the version serving most traffic:'),
        h('ul', null, policy.rules.map((rule, index) => {
          const progress = state.progress?.find((entry) => entry.rule === index);
          return h('li', null, describeRule(rule), progress ? ` — ${progress.bad_in_a_row} bad window${progress.bad_in_a_row === 1 ? '' : 's'} in a row so far` : '');
        })),
        facts([
          ['Action', describeAction(policy.action)],
          ['Cooldown', duration(policy.cooldown_ms)],
          ['Runs at once', `${state.active_runs} active, at most ${policy.max_concurrent}`],
          ['Run timeout', duration(policy.run_timeout_ms)],
          ['Canary of the new version', policy.rollout ? `steps ${stepsOf(policy.rollout).join(', ')}%` : 'none'],
          ['Set', [when(state.updated_at), ` by ${state.updated_by}`]],
        ]),
      ]
      : note('This model has no training trigger policy.'),
    runs.length
      ? table('Runs, newest first', ['Run', 'Reason', 'Status', 'Base version', 'New version', 'Fired by', 'Fired', 'Finished', 'Detail', 'Canary'], runs.map((run) => [
        String(run.id), run.reason, statusBadge(run.status), String(run.base_version), run.result_version ?? DASH,
        run.fired_by, when(run.created_at), when(run.finished_at), run.detail || DASH, run.rollout || DASH,
      ]), { rowHeaders: true })
      : note('No training run has been fired for this model.'),
  ];
}

export async function viewMonitoring(context) {
  const [model] = context.params;
  const [versions, deployment] = await Promise.all([
    api.call('list_versions', { pathParams: { model } }),
    api.callOr404('get_deployment', { pathParams: { model } }),
  ]);
  const heaviest = deployment?.targets?.reduce((best, target) => (best === null || target.weight > best.weight ? target : best), null)?.version;
  const chosen = Number(context.query.get('version')) || heaviest || versions.at(-1)?.version;
  const span = Number(context.query.get('span')) === 10 ? 10 : 30;
  if (!chosen) {
    return [heading(`Monitoring of ${model}`), modelLinks(model), note(`${model} has no version to monitor.`)];
  }
  const version = String(chosen);
  const [drift, timeline, performance, slices, policy, runs] = await Promise.all([
    settle(api.call('model_drift', { pathParams: { model }, query: { version } })),
    settle(driftOverTime(model, chosen, span, 10)),
    settle(api.call('model_performance', { pathParams: { model }, query: { version } })),
    settle(api.call('model_slices', { pathParams: { model }, query: { version } })),
    settle(api.callOr404('get_trigger_policy', { pathParams: { model } })),
    settle(api.call('list_trigger_runs', { query: { model, limit: 20 } })),
  ]);
  const versionSelect = h('select', { name: 'version' }, versions.map((entry) =>
    h('option', { value: String(entry.version), selected: entry.version === chosen }, `version ${entry.version} (${entry.stage})${entry.version === heaviest ? ', serving most traffic' : ''}`)));
  const spanSelect = h('select', { name: 'span' }, [[30, 'the last 30 minutes, in 3-minute buckets'], [10, 'the last 10 minutes, in 1-minute buckets']].map(([value, text]) =>
    h('option', { value: String(value), selected: value === span }, text)));
  const chooser = h(
    'form',
    {
      class: 'inline-controls',
      method: 'post',
      onsubmit: (event) => {
        event.preventDefault();
        window.location.hash = `${route('monitoring', model)}?version=${encodeURIComponent(versionSelect.value)}&span=${encodeURIComponent(spanSelect.value)}`;
      },
    },
    field('Version', versionSelect),
    field('Drift over', spanSelect),
    h('button', { type: 'submit' }, 'Show'),
  );
  const threshold = drift.value?.thresholds?.psi_drift ?? 0.2;
  return [
    heading(`Monitoring of ${model}`),
    modelLinks(model, 'monitoring'),
    chooser,
    section('Drift now', drift.error ? failed(drift) : driftNow(drift.value)),
    section(
      'Drift over time',
      timeline.error
        ? failed(timeline)
        : [
          h('p', null, `Population stability index (vertical axis) of each column against version ${version}'s reference profile, per ${fmt(timeline.value.minutes, 3)}-minute bucket of what gateways reported (the registry keeps 30 minutes; the horizontal axis is time before the last bucket). The dashed line is the drift threshold, ${threshold}; red dots are buckets at or over it.`),
          driftPlots(timeline.value, threshold),
        ],
    ),
    section('Contract violations', drift.error && timeline.error ? note('No data.') : contractSection(drift.value, timeline.value)),
    section('Realized performance', performance.error ? failed(performance) : performanceSection(performance.value)),
    section('Slices', slices.error ? failed(slices) : slicesSection(slices.value)),
    section('Training triggers', policy.error ? failed(policy) : runs.error ? failed(runs) : triggersSection(policy.value, runs.value)),
  ];
}
