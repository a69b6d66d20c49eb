// The models area: the list of models, a model (its versions, aliases,
// stage transitions and behavioural suite), and a version (its card,
// lineage, metrics, signature, stage history, documents and suite report).

import * as api from './api.js';
import { facts, h, route, table } from './dom.js';
import {
  DASH, code, fmt, heading, keyValues, link, metricsText, modelLinks, note, percent, section, stageBadge, statusBadge,
  subsection, when,
} from './ui.js';

export async function viewModels() {
  const models = await api.call('list_models');
  const rows = models.map((model) => [
    link(route('models', model.name), model.name),
    model.description || DASH,
    keyValues(model.tags),
    model.latest_version ?? DASH,
    when(model.updated_at),
  ]);
  return [
    heading('Models'),
    models.length === 0
      ? note('No model is registered yet.')
      : table(null, ['Model', 'Description', 'Tags', 'Latest version', 'Updated'], rows, { rowHeaders: true }),
  ];
}

function transitionsTable(transitions, withVersion) {
  const rows = transitions.map((transition) => [
    String(transition.id),
    withVersion ? link(route('models', transition.model, 'versions', transition.version), `version ${transition.version}`) : null,
    `${transition.from_stage} → ${transition.to_stage}`,
    statusBadge(transition.status),
    transition.requested_by,
    when(transition.requested_at),
    transition.comment || DASH,
    reviewsList(transition),
  ].filter((cell) => cell !== null));
  const columns = ['Transition', withVersion ? 'Version' : null, 'Stages', 'Status', 'Requested by', 'Requested', 'Comment', 'Reviews']
    .filter((column) => column !== null);
  return table(null, columns, rows, { rowHeaders: true });
}

function reviewsList(transition) {
  const items = transition.reviews.map((review) =>
    h(
      'li',
      null,
      h('strong', null, review.actor),
      review.decision === 'approve' ? ` approved${review.approval ? ` (${review.approval})` : ''}` : ' rejected',
      ', ',
      when(review.at),
      review.comment ? [': ', h('q', null, review.comment)] : null,
    ));
  for (const missing of transition.missing_approvals || []) {
    items.push(h('li', null, `${missing}: not given yet`));
  }
  return items.length === 0 ? DASH : h('ul', { class: 'plain' }, items);
}

export async function viewModel({ params: [model] }) {
  const [detail, versions, aliases, transitions, suite] = await Promise.all([
    api.call('get_model', { pathParams: { model } }),
    api.call('list_versions', { pathParams: { model } }),
    api.call('list_aliases', { pathParams: { model } }),
    api.call('list_transitions', { query: { model } }),
    api.callOr404('get_suite', { pathParams: { model } }),
  ]);
  const versionRows = versions.map((version) => [
    link(route('models', model, 'versions', version.version), `version ${version.version}`),
    stageBadge(version.stage),
    version.aliases.length ? version.aliases.join(', ') : DASH,
    metricsText(version.lineage.metrics),
    version.author,
    when(version.created_at),
  ]);
  return [
    heading(`Model ${model}`),
    h('p', { class: 'description' }, detail.description || 'No description.'),
    facts([['Tags', keyValues(detail.tags)], ['Created', [when(detail.created_at), ` by ${detail.created_by}`]], ['Updated', when(detail.updated_at)]]),
    modelLinks(model, 'models'),
    section(
      'Versions',
      versions.length === 0
        ? note('No version yet.')
        : table(null, ['Version', 'Stage', 'Aliases', 'Metrics', 'Author', 'Created'], versionRows, { rowHeaders: true }),
    ),
    section(
      'Aliases',
      aliases.length === 0
        ? note('No alias.')
        : table(null, ['Alias', 'Version', 'Set by', 'Set'], aliases.map((alias) => [
          alias.alias,
          link(route('models', model, 'versions', alias.version), `version ${alias.version}`),
          alias.updated_by,
          when(alias.updated_at),
        ]), { rowHeaders: true }),
    ),
    section('Stage transitions', transitions.length === 0 ? note('No transition was requested.') : transitionsTable(transitions, true)),
    section('Behavioural suite', suiteSummary(suite)),
  ];
}

function suiteSummary(stored) {
  if (!stored) {
    return note('This model has no behavioural suite.');
  }
  const suite = stored.suite || {};
  const count = (kind) => (Array.isArray(suite[kind]) ? suite[kind].length : 0);
  return [
    facts([
      ['Revision', String(stored.revision)],
      ['Stored', [when(stored.created_at), ` by ${stored.created_by}`]],
      ['Description', suite.description],
    ]),
    table(null, ['Kind', 'Cases'], ['golden', 'invariance', 'directional', 'minimum'].map((kind) => [kind, String(count(kind))]), { rowHeaders: true }),
  ];
}

function suiteReport(report) {
  if (!report) {
    return note('The suite has not been run on this version.');
  }
  const failures = report.failures.slice(0, 10);
  return [
    facts([
      ['Verdict', statusBadge(report.passed ? 'passed' : 'failed')],
      ['Suite revision', String(report.suite_revision)],
      ['Ran', [when(report.ran_at), ` by ${report.ran_by}`]],
    ]),
    table('Cases by kind', ['Kind', 'Cases', 'Failed'], report.kinds.map((kind) => [kind.kind, String(kind.cases), String(kind.failed)]), { rowHeaders: true }),
    report.slices.length
      ? table('Minimum functionality by slice', ['Slice', 'Cases', 'Passed', 'Pass rate', 'Needed'], report.slices.map((slice) => [
        slice.slice, String(slice.cases), String(slice.passed), percent(slice.pass_rate), percent(slice.min_pass_rate),
      ]), { rowHeaders: true })
      : null,
    failures.length
      ? [
        h('p', null, `${report.failures.length} failed case${report.failures.length === 1 ? '' : 's'}${report.failures.length > failures.length ? ', the first 10:' : ':'}`),
        h('ul', null, failures.map((failure) => h('li', null, code(failure.kind), ' ', h('q', null, failure.name), `: ${failure.reason}`))),
      ]
      : null,
  ];
}

function documentView(document) {
  const text = JSON.stringify(document.body, null, 2);
  const limit = 20000;
  const shown = text.length > limit ? `${text.slice(0, limit)}\n… (${text.length - limit} more characters)` : text;
  return h(
    'details',
    { class: 'document', open: text.length <= 2000 },
    h('summary', null, code(document.name), ` updated by ${document.updated_by}, `, when(document.updated_at)),
    h('pre', null, shown),
  );
}

export async function viewVersion({ params: [model, version] }) {
  const [detail, modelDetail, transitions, documents, report, events] = await Promise.all([
    api.call('get_version', { pathParams: { model, version } }),
    api.call('get_model', { pathParams: { model } }),
    api.call('list_transitions', { query: { model } }),
    api.call('list_documents', { pathParams: { model, version } }),
    api.callOr404('suite_report', { pathParams: { model, version } }),
    api.call('list_events', { query: { model, action: 'version.*', order: 'desc', limit: 200 } }),
  ]);
  const number = detail.version;
  const lineage = detail.lineage;
  const own = transitions.filter((transition) => transition.version === number).sort((a, b) => a.id - b.id);
  const stageEvents = events
    .filter((event) => event.subject === `${model}/${number}` && event.action !== 'version.create')
    .reverse();
  const signatureRows = [
    ...detail.signature.inputs.map((tensor) => ['input', tensor.name, tensor.datatype, `[${tensor.shape.join(', ')}]`]),
    ...detail.signature.outputs.map((tensor) => ['output', tensor.name, tensor.datatype, `[${tensor.shape.join(', ')}]`]),
  ];
  return [
    heading(`${model} version ${number}`),
    h('p', { class: 'description' }, modelDetail.description || ''),
    facts([
      ['Stage', stageBadge(detail.stage)],
      ['Aliases', detail.aliases.length ? detail.aliases.join(', ') : null],
      ['Author', detail.author],
      ['Created', when(detail.created_at)],
      ['Deployable until', detail.rollback_until ? when(detail.rollback_until) : null],
      ['Artifact', [code(detail.sha256), `, ${detail.size} bytes`]],
      ['Imported from', detail.source_uri],
    ]),
    modelLinks(model),
    section(
      'Model card',
      lineage.intended_use || lineage.limitations
        ? facts([['Intended use', lineage.intended_use], ['Limitations', lineage.limitations]])
        : note('No intended use or limitations were recorded.'),
    ),
    section(
      'Lineage',
      facts([
        ['Training run', lineage.training_run_id],
        ['Code commit', lineage.code_commit ? code(lineage.code_commit) : null],
        ['Dataset', lineage.dataset ? [lineage.dataset.uri, lineage.dataset.sha256 ? [' (sha256 ', code(lineage.dataset.sha256), ')'] : null] : null],
        ['Retrained from', lineage.parent_version ? link(route('models', model, 'versions', lineage.parent_version), `version ${lineage.parent_version}`) : null],
        ['Training trigger run', lineage.trigger_id ? String(lineage.trigger_id) : null],
        ['Slice feature', lineage.slice ? `${lineage.slice.feature}${lineage.slice.edges?.length ? `, edges ${lineage.slice.edges.join(', ')}` : ''}` : null],
      ]),
      subsection('Parameters', Object.keys(lineage.parameters).length
        ? table(null, ['Parameter', 'Value'], Object.entries(lineage.parameters).map(([name, value]) => [name, value]), { rowHeaders: true })
        : note('None recorded.')),
      subsection('Environment', Object.keys(lineage.environment).length
        ? table(null, ['Package', 'Version'], Object.entries(lineage.environment).map(([name, value]) => [name, value]), { rowHeaders: true })
        : note('None recorded.')),
    ),
    section(
      'Metrics',
      Object.keys(lineage.metrics).length
        ? table(null, ['Metric', 'Value'], Object.entries(lineage.metrics).map(([name, value]) => [name, fmt(value)]), { rowHeaders: true })
        : note('No metric was recorded: metric gates on this version fail.'),
    ),
    section('Signature', table(null, ['Direction', 'Name', 'Datatype', 'Shape'], signatureRows)),
    section(
      'Stage history',
      own.length ? transitionsTable(own, false) : note('No stage transition was requested for this version.'),
      stageEvents.length
        ? table('Stage changes', ['When', 'Change', 'By', 'Stages', 'Why', 'Rule'], stageEvents.map((event) => [
          when(event.at),
          event.action,
          event.actor,
          `${event.before?.stage ?? DASH} → ${event.after?.stage ?? DASH}`,
          event.reason || DASH,
          event.rule || DASH,
        ]))
        : null,
    ),
    section('Documents', documents.length ? documents.map(documentView) : note('No document is attached.')),
    section('Suite report', suiteReport(report)),
  ];
}
