// Building the page without ever parsing text as HTML. Every element of the
// console is made here: `h` for HTML, `s` for SVG. Text goes in as text
// nodes, attributes through setAttribute on an allow-list, links only to
// the console's own hash routes, events as listeners. Nothing a deployer
// or a model card wrote can become markup, a script or a style: there is
// no innerHTML, outerHTML, insertAdjacentHTML or document.write anywhere in
// the console, and the registry's Content-Security-Policy forbids inline
// scripts and styles besides.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Attributes set with setAttribute. Anything else throws: a typo, or a
// name such as `style`, `src` or `srcdoc`, is a bug to find at once.
const HTML_ATTRIBUTES = new Set([
  'id', 'class', 'href', 'type', 'name', 'for', 'role', 'scope', 'colspan', 'rowspan',
  'title', 'tabindex', 'placeholder', 'autocomplete', 'required', 'min', 'max', 'step',
  'lang', 'hidden', 'datetime', 'open', 'rows', 'cols', 'spellcheck', 'inputmode',
  'pattern', 'method', 'novalidate', 'headers', 'maxlength', 'size', 'list', 'start',
]);
const SVG_ATTRIBUTES = new Set([
  'id', 'class', 'role', 'viewBox', 'width', 'height', 'x', 'y', 'x1', 'x2', 'y1', 'y2',
  'cx', 'cy', 'r', 'd', 'points', 'fill', 'stroke', 'stroke-width', 'stroke-dasharray',
  'text-anchor', 'dominant-baseline', 'font-size', 'transform', 'focusable',
  'preserveAspectRatio', 'tabindex',
]);
// Set as properties, so that a form shows what the code says.
const PROPERTIES = new Set(['value', 'checked', 'disabled', 'selected']);

/** Only the console's own routes (`#/models/...`) and in-page anchors (`#main`). */
export function safeHref(href) {
  const text = String(href);
  if (!/^#(\/[A-Za-z0-9_.~%*+\-/?=&]*|[A-Za-z][A-Za-z0-9_-]*)$/.test(text)) {
    throw new Error(`refusing a link that is not a console route: ${JSON.stringify(text)}`);
  }
  return text;
}

/** A console route from path segments, each percent-encoded: `route('models', name)`. */
export function route(...segments) {
  return `#/${segments.map((segment) => encodeURIComponent(String(segment))).join('/')}`;
}

function setAttributes(element, attributes, allowed) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith('on')) {
      if (typeof value !== 'function') {
        throw new Error(`${name} must be a function`);
      }
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (PROPERTIES.has(name) && !(element instanceof SVGElement)) {
      element[name] = value;
    } else if (name.startsWith('aria-') || name.startsWith('data-')) {
      if (!/^(aria|data)-[a-z-]+$/.test(name)) {
        throw new Error(`bad attribute name ${name}`);
      }
      element.setAttribute(name, String(value));
    } else if (allowed.has(name)) {
      const text = value === true ? '' : String(value);
      element.setAttribute(name, name === 'href' ? safeHref(text) : text);
    } else {
      throw new Error(`attribute ${name} is not allowed on <${element.tagName.toLowerCase()}>`);
    }
  }
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    if (Array.isArray(child)) {
      append(element, child);
    } else if (child instanceof Node) {
      element.appendChild(child);
    } else {
      element.appendChild(document.createTextNode(String(child)));
    }
  }
}

/** An HTML element: `h('a', {href: route('models')}, 'Models')`. */
export function h(tag, attributes, ...children) {
  if (!/^[a-z][a-z0-9]*$/.test(tag) || tag === 'script' || tag === 'style' || tag === 'iframe') {
    throw new Error(`refusing to make <${tag}>`);
  }
  const element = document.createElement(tag);
  setAttributes(element, attributes, HTML_ATTRIBUTES);
  append(element, children);
  return element;
}

/** An SVG element, made with createElementNS; text children are text nodes. */
export function s(tag, attributes, ...children) {
  if (!/^[a-zA-Z]+$/.test(tag) || tag === 'script' || tag === 'foreignObject' || tag === 'style') {
    throw new Error(`refusing to make <${tag}>`);
  }
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes, SVG_ATTRIBUTES);
  append(element, children);
  return element;
}

/** Replaces what `element` holds with `children`. */
export function mount(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

let labelled = 0;

/** A fresh id for tying a label to its control. */
export function uniqueId(prefix) {
  labelled += 1;
  return `${prefix}-${labelled}`;
}

/** A labelled control: `field('Comment', h('textarea', {...}))`. */
export function field(label, control, hint) {
  const id = control.id || uniqueId('field');
  control.id = id;
  let hintElement = null;
  if (hint) {
    hintElement = h('span', { class: 'hint', id: `${id}-hint` }, hint);
    control.setAttribute('aria-describedby', `${id}-hint`);
  }
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintElement);
}

/**
 * A table: `columns` are header texts, `rows` arrays of cells (text or
 * nodes); the first cell of a row is its header when `rowHeaders` is set.
 */
export function table(caption, columns, rows, options = {}) {
  const head = h('thead', null, h('tr', null, columns.map((column) => h('th', { scope: 'col' }, column))));
  const body = h(
    'tbody',
    null,
    rows.map((cells) =>
      h(
        'tr',
        null,
        cells.map((cell, index) =>
          index === 0 && options.rowHeaders ? h('th', { scope: 'row' }, cell) : h('td', null, cell),
        ),
      ),
    ),
  );
  return h(
    'div',
    { class: 'table-wrap' },
    h('table', { class: options.className || null }, caption ? h('caption', null, caption) : null, head, body),
  );
}

/** Key-value pairs as a description list; empty values are left out. */
export function facts(pairs) {
  const items = pairs.filter(([, value]) => value !== undefined && value !== null && value !== '');
  return h(
    'dl',
    { class: 'facts' },
    items.map(([term, value]) => h('div', null, h('dt', null, term), h('dd', null, value))),
  );
}

/** A small coloured label whose text says what the colour means. */
export function badge(text, tone) {
  return h('span', { class: `badge badge-${tone || 'plain'}` }, text);
}
