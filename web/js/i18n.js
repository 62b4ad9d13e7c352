/**
 * Interface language: loads the zh-CN or en strings, picks one from the remembered choice or
 * navigator.language, and translates the document in place.
 *
 * Translatable text is marked in the DOM, not rendered once: an element with data-i18n="common.loading"
 * (and optional data-i18n-args='{"n": 3}') gets its text, data-i18n-attr="aria-label:key;..."
 * gets attributes. Switching language re-applies every mark, so pages never re-render for it.
 */

export const LANGUAGES = ['zh-CN', 'en'];
const STORAGE_KEY = 'tongxin.lang';

let strings = {};
let fallback = {};
let current = 'zh-CN';
const listeners = new Set();

/** The language to use: the remembered choice, else the browser's, else Chinese. */
export function chooseLanguage(remembered, browserLanguages) {
  if (LANGUAGES.includes(remembered)) return remembered;
  for (const lang of browserLanguages || []) {
    const lower = String(lang).toLowerCase();
    if (lower.startsWith('zh')) return 'zh-CN';
    if (lower.startsWith('en')) return 'en';
  }
  return 'zh-CN';
}

/** Replaces {name} placeholders with args' values (missing ones stay visible). */
export function format(template, args) {
  if (!args) return template;
  return template.replace(/\{(\w+)\}/g, (whole, name) =>
    Object.prototype.hasOwnProperty.call(args, name) ? String(args[name]) : whole);
}

async function fetchStrings(lang) {
  const response = await fetch(`/static/i18n/${lang}.json`, { cache: 'no-cache' });
  if (!response.ok) throw new Error(`strings for ${lang}: HTTP ${response.status}`);
  return response.json();
}

function readRemembered() {
  try { return localStorage.getItem(STORAGE_KEY); } catch { return null; }
}

/** Loads the strings of the chosen language; call once before rendering. */
export async function initI18n() {
  const lang = chooseLanguage(readRemembered(), navigator.languages || [navigator.language]);
  fallback = await fetchStrings('en');
  await setLanguage(lang, { remember: false });
}

export function language() {
  return current;
}

/** True when `key` has a string (in the current language or the English fallback). */
export function has(key) {
  return key in strings || key in fallback;
}

/** The string for `key` in the current language, formatted with `args`. */
export function t(key, args) {
  const template = strings[key] ?? fallback[key];
  if (template === undefined) {
    console.warn(`missing string: ${key}`);
    return key;
  }
  return format(template, args);
}

/** Marks `el` to show the string `key` (re-applied on language change); returns `el`. */
export function setText(el, key, args) {
  el.dataset.i18n = key;
  if (args) el.dataset.i18nArgs = JSON.stringify(args);
  else delete el.dataset.i18nArgs;
  el.textContent = t(key, args);
  return el;
}

/** Marks attribute `attr` of `el` to hold the string `key`; returns `el`. */
export function setAttrText(el, attr, key, args) {
  const marks = parseAttrMarks(el.dataset.i18nAttr).filter(([name]) => name !== attr);
  marks.push([attr, key, args]);
  el.dataset.i18nAttr = marks
    .map(([name, k, a]) => (a ? `${name}:${k}:${JSON.stringify(a)}` : `${name}:${k}`))
    .join(';');
  el.setAttribute(attr, t(key, args));
  return el;
}

function parseAttrMarks(value) {
  if (!value) return [];
  return value.split(';').filter(Boolean).map((part) => {
    const [name, key, ...rest] = part.split(':');
    const json = rest.join(':');
    return [name, key, json ? JSON.parse(json) : undefined];
  });
}

/** Re-applies every mark under `root` in the current language. */
export function translateTree(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    const args = el.dataset.i18nArgs ? JSON.parse(el.dataset.i18nArgs) : undefined;
    el.textContent = t(el.dataset.i18n, args);
  }
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const [name, key, args] of parseAttrMarks(el.dataset.i18nAttr)) {
      el.setAttribute(name, t(key, args));
    }
  }
}

/** Switches the interface language, remembers it and re-translates the document. */
export async function setLanguage(lang, { remember = true } = {}) {
  if (!LANGUAGES.includes(lang)) return;
  strings = lang === 'en' ? fallback : await fetchStrings(lang);
  current = lang;
  if (remember) {
    try { localStorage.setItem(STORAGE_KEY, lang); } catch { /* private mode: not remembered */ }
  }
  document.documentElement.lang = lang;
  translateTree(document);
  for (const listener of listeners) listener(lang);
}

/** Calls `listener(lang)` after every language switch; returns an unsubscribe function. */
export function onLanguageChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
