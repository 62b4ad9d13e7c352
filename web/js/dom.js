/**
 * Building DOM nodes without HTML strings: `h(tag, props, ...children)` and small helpers.
 *
 * Text always goes through textContent (never parsed as HTML), so names and reasons typed by users
 * cannot inject markup. Props: `class`, `text` (literal text), `i18n` (a string key, with
 * `i18nArgs`), `attrs`, `on` (event listeners), `dataset`, and any other DOM property.
 */

import { setAttrText, setText } from './i18n.js';

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    switch (name) {
      case 'class':
        el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : value;
        break;
      case 'text':
        el.textContent = value;
        break;
      case 'i18n':
        setText(el, value, props.i18nArgs);
        break;
      case 'i18nArgs':
        break;
      case 'i18nAttrs':
        for (const [attr, key] of Object.entries(value)) setAttrText(el, attr, key);
        break;
      case 'attrs':
        for (const [attr, v] of Object.entries(value)) {
          if (v !== undefined && v !== null && v !== false) el.setAttribute(attr, v === true ? '' : v);
        }
        break;
      case 'dataset':
        Object.assign(el.dataset, value);
        break;
      case 'on':
        for (const [event, listener] of Object.entries(value)) el.addEventListener(event, listener);
        break;
      default:
        el[name] = value;
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces all children of `el`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let nextId = 0;
/** A document-unique id for label/control pairs. */
export function uid(prefix = 'tx') {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** A labelled form field: <div class="field"><label for>…</label>control</div>. */
export function field(labelKey, control, hintKey) {
  if (!control.id) control.id = uid('field');
  const hint = hintKey ? h('p', { class: 'hint', i18n: hintKey, id: uid('hint') }) : null;
  if (hint) control.setAttribute('aria-describedby', hint.id);
  return h('div', { class: 'field' },
    h('label', { attrs: { for: control.id }, i18n: labelKey }), control, hint);
}

/** A <select> with options [{value, i18n? , text?}]. */
export function select(options, props = {}) {
  return h('select', props, options.map((o) =>
    h('option', { value: o.value, i18n: o.i18n, text: o.text, selected: o.selected })));
}
