// The approvals area: every pending stage transition as a card with its
// approvals, gates and suite verdict, and, for approvers, the form that
// approves or rejects it. The registry checks the policy; the form only asks.

import * as api from './api.js';
import { badge, facts, field, h, route, uniqueId } from './dom.js';
import { clearMessages, heading, link, metricsText, note, say, showError, stageBadge, when } from './ui.js';

function gateResults(transition, version, gates, report) {
  const items = [];
  for (const review of transition.reviews) {
    if (review.decision === 'approve') {
      items.push(h('li', null, badge('given', 'good'), ` ${review.approval ?? 'approval'} approval by ${review.actor}`, review.comment ? [': ', h('q', null, review.comment)] : null));
    }
  }
  for (const missing of transition.missing_approvals) {
    items.push(h('li', null, badge('missing', 'warn'), ` ${missing} approval`));
  }
  // The target stage's gates, judged now by the registry
  // (`transition_gates`): the suite and slice gates ran at the request, the
  // metric gates run again when the transition applies.
  for (const gate of gates) {
    items.push(h('li', null, badge(gate.passed ? 'passes' : 'fails', gate.passed ? 'good' : 'bad'), ` ${gate.kind} gate ${gate.gate}`, gate.detail ? `: ${gate.detail}` : ''));
  }
  if (!gates.some((gate) => gate.kind === 'suite')) {
    items.push(h(
      'li',
      null,
      report ? badge(report.passed ? 'passed' : 'failed', report.passed ? 'good' : 'bad') : badge('not run', 'plain'),
      report ? ` behavioural suite revision ${report.suite_revision}, run by ${report.ran_by} (not required by this stage)` : ' behavioural suite: no report for this version (not required by this stage)',
    ));
  }
  items.push(h('li', null, badge('recorded', 'info'), ` metrics: ${metricsText(version.lineage.metrics)}`));
  return h('ul', { class: 'gates' }, items);
}

function reviewForm(transition, context) {
  const approval = h(
    'select',
    { name: 'approval' },
    transition.missing_approvals.map((kind) => h('option', { value: kind }, kind)),
  );
  const comment = h('textarea', { name: 'comment', rows: '2', cols: '40' });
  const approve = h('button', { type: 'submit', 'data-decision': 'approve' }, 'Approve');
  const reject = h('button', { type: 'button', class: 'danger', 'data-decision': 'reject' }, 'Reject');
  const act = async (decision) => {
    approve.disabled = true;
    reject.disabled = true;
    try {
      const body = decision === 'approve'
        ? { approval: approval.value || undefined, comment: comment.value }
        : { comment: comment.value };
      const done = await api.call(decision === 'approve' ? 'approve_transition' : 'reject_transition', {
        pathParams: { id: transition.id },
        body,
      });
      clearMessages();
      const outcome = done.status === 'applied'
        ? `applied: version ${done.version} of ${done.model} is in ${done.to_stage}`
        : done.status === 'rejected'
          ? 'rejected'
          : `still pending, waiting for ${done.missing_approvals.join(', ')}`;
      say(`Transition ${done.id} ${decision === 'approve' ? 'approved' : 'rejected'} by ${context.identity.actor}: ${outcome}.`);
      context.refresh();
    } catch (err) {
      showError(err);
      approve.disabled = false;
      reject.disabled = false;
    }
  };
  reject.addEventListener('click', () => act('reject'));
  return h(
    'form',
    {
      class: 'review',
      method: 'post',
      onsubmit: (event) => {
        event.preventDefault();
        act('approve');
      },
    },
    transition.missing_approvals.length ? field('Approval to give', approval) : null,
    field('Review comment', comment, 'Recorded with your review in the audit log.'),
    h('div', { class: 'buttons' }, transition.missing_approvals.length ? approve : null, reject),
  );
}

export async function viewApprovals(context) {
  const pending = await api.call('list_transitions', { query: { status: 'pending' } });
  const details = await Promise.all(pending.map((transition) => Promise.all([
    api.call('get_version', { pathParams: { model: transition.model, version: transition.version } }),
    api.call('transition_gates', { pathParams: { id: transition.id } }),
    api.callOr404('suite_report', { pathParams: { model: transition.model, version: transition.version } }),
  ])));
  const cards = pending.map((transition, index) => {
    const [version, gates, report] = details[index];
    const id = uniqueId('transition');
    return h(
      'article',
      { class: 'card', 'aria-labelledby': id, 'data-transition': String(transition.id) },
      h('h2', { id }, `${transition.model} version ${transition.version}: ${transition.from_stage} → ${transition.to_stage}`),
      facts([
        ['Transition', String(transition.id)],
        ['Requested', [when(transition.requested_at), ` by ${transition.requested_by}`]],
        ['Request comment', transition.comment ? h('q', null, transition.comment) : null],
        ['Version', [stageBadge(version.stage), ' ', link(route('models', transition.model, 'versions', transition.version), `Read version ${transition.version}'s card and lineage`)]],
      ]),
      h('h3', null, 'Approvals and gates'),
      gateResults(transition, version, gates, report),
      context.may('review')
        ? reviewForm(transition, context)
        : null,
    );
  });
  return [
    heading('Approvals'),
    h('p', null, context.may('review')
      ? 'Stage transitions waiting for a review, newest first. The registry checks each approval against the policy: four eyes, approval kinds and gates.'
      : `Stage transitions waiting for a review, newest first. Your role (${context.identity.role}) may read them; reviewing needs role approver or admin.`),
    cards.length ? cards : note('No transition is waiting for a review.'),
  ];
}
