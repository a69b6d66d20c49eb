// Line plots as SVG, built element by element (dom.js `s`): no canvas, no
// library. Each plot is an image with a <title> and a <desc> for assistive
// technology, and a caption that says in words what the line shows, so
// that nobody needs to see the picture to read it.

import { h, s, uniqueId } from './dom.js';

const WIDTH = 360;
const HEIGHT = 170;
const MARGIN = { top: 12, right: 14, bottom: 30, left: 46 };

function number(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return 'none';
  }
  return Number(value).toPrecision(digits).replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '');
}

function niceMax(value) {
  if (!(value > 0)) {
    return 1;
  }
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= value) {
      return step * magnitude;
    }
  }
  return 10 * magnitude;
}

/** What the line shows, in words: the first and last values, extremes, crossings. */
export function describe(name, points, threshold, unit) {
  const known = points.filter((point) => point.y !== null && point.y !== undefined);
  if (known.length === 0) {
    return `${name}: no data in this span.`;
  }
  const values = known.map((point) => point.y);
  const first = known[0];
  const last = known[known.length - 1];
  let text = known.length === 1
    ? `${name}: ${number(first.y)} ${first.label}, the only ${unit === 'points' ? 'point' : 'bucket'} with data`
    : `${name}: ${number(first.y)} ${first.label}, ${number(last.y)} ${last.label}; `
      + `lowest ${number(Math.min(...values))}, highest ${number(Math.max(...values))}`;
  if (threshold) {
    const over = known.filter((point) => point.y >= threshold.value).length;
    text += `; at or over the ${threshold.label} ${number(threshold.value)} in ${over} of ${known.length} ${unit || 'points'}`;
  }
  return `${text}.`;
}

/**
 * A line plot of `points` (`{x, y, label}`, x ascending; y null for a gap).
 * `xTicks` are `{x, text}`; `threshold` (`{value, label}`) is drawn dashed.
 */
export function linePlot({ title, name, points, xTicks = [], threshold = null, unit = 'points' }) {
  const titleId = uniqueId('plot-title');
  const descId = uniqueId('plot-desc');
  const summary = describe(name, points, threshold, unit);
  const innerWidth = WIDTH - MARGIN.left - MARGIN.right;
  const innerHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const xs = points.map((point) => point.x);
  const xMin = Math.min(...xs, ...xTicks.map((tick) => tick.x));
  const xMax = Math.max(...xs, ...xTicks.map((tick) => tick.x));
  const ys = points.map((point) => point.y).filter((y) => y !== null && y !== undefined);
  const yMax = niceMax(Math.max(0, ...ys, threshold ? threshold.value * 1.25 : 0));
  const x = (value) => MARGIN.left + (xMax === xMin ? innerWidth / 2 : ((value - xMin) / (xMax - xMin)) * innerWidth);
  const y = (value) => MARGIN.top + innerHeight - (value / yMax) * innerHeight;

  // The line, broken where a point has no value.
  let path = '';
  let drawing = false;
  for (const point of points) {
    if (point.y === null || point.y === undefined) {
      drawing = false;
      continue;
    }
    path += `${drawing ? 'L' : 'M'}${x(point.x).toFixed(1)},${y(point.y).toFixed(1)} `;
    drawing = true;
  }
  const yTicks = [0, yMax / 2, yMax];
  const svg = s(
    'svg',
    {
      class: 'plot',
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: 'img',
      'aria-labelledby': `${titleId} ${descId}`,
      focusable: 'false',
    },
    s('title', { id: titleId }, title),
    s('desc', { id: descId }, summary),
    // Axes and grid.
    yTicks.map((tick) => [
      s('line', { class: 'grid', x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(tick), y2: y(tick) }),
      s('text', { class: 'tick', x: MARGIN.left - 6, y: y(tick), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, number(tick, 2)),
    ]),
    xTicks.map((tick) =>
      s('text', { class: 'tick', x: x(tick.x), y: HEIGHT - MARGIN.bottom + 16, 'text-anchor': 'middle' }, tick.text),
    ),
    s('line', { class: 'axis', x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: MARGIN.top + innerHeight }),
    s('line', { class: 'axis', x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: MARGIN.top + innerHeight, y2: MARGIN.top + innerHeight }),
    threshold
      ? [
        s('line', { class: 'threshold', x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(threshold.value), y2: y(threshold.value) }),
        s('text', { class: 'threshold-label', x: WIDTH - MARGIN.right, y: y(threshold.value) - 4, 'text-anchor': 'end' }, `${threshold.label} ${number(threshold.value, 2)}`),
      ]
      : null,
    path ? s('path', { class: 'line', d: path.trim() }) : null,
    points
      .filter((point) => point.y !== null && point.y !== undefined)
      .map((point) =>
        s('circle', { class: threshold && point.y >= threshold.value ? 'dot dot-over' : 'dot', cx: x(point.x), cy: y(point.y), r: 3 }),
      ),
  );
  return h(
    'figure',
    { class: 'plot-figure' },
    h('figcaption', null, h('span', { class: 'plot-title' }, title), h('span', { class: 'plot-summary' }, summary)),
    svg,
  );
}
