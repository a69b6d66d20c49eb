// The fleet: the gateways heard from lately, the deployments revision each
// serves against the registry's, and whether each still reports.

import * as api from './api.js';
import { badge, h, table } from './dom.js';
import { DASH, duration, fmt, heading, keyValues, note, when } from './ui.js';

export async function viewFleet() {
  const fleet = await api.call('list_gateways');
  const rows = fleet.gateways.map((gateway) => {
    const serving = gateway.serving;
    const behind = serving && serving.revision < fleet.revision;
    return [
      gateway.gateway,
      serving ? [String(serving.revision), ' ', behind ? badge('behind', 'warn') : badge('current', 'good')] : 'not reported',
      serving ? keyValues(Object.fromEntries(Object.entries(serving.models).map(([name, list]) => [name, list.join(', ')]))) : DASH,
      serving ? when(serving.started_at) : DASH,
      serving?.build || DASH,
      [when(gateway.last_report_at), ` (${fmt(gateway.seconds_since_report, 3)} s ago)`],
      duration(gateway.interval_ms),
      gateway.stale ? badge('stale', 'bad') : badge('reporting', 'good'),
    ];
  });
  return [
    heading('Gateways'),
    h('p', null, `Gateways heard from in the last 30 minutes, and the deployments revision each serves; the registry is at revision ${fleet.revision}.`),
    rows.length
      ? table(null, ['Gateway', 'Serving revision', 'Versions loaded', 'Started', 'Build', 'Last report', 'Reports every', 'State'], rows, { rowHeaders: true })
      : note('No gateway has reported in the last 30 minutes.'),
  ];
}
