// A JSON editor: a textarea with a line-number gutter, live validation that names the line and
// column of the first error (a small parser of our own, so every browser reports the same
// position), pretty-printing, and Tab indenting.

import { h } from './dom.js';

class JsonSyntaxError extends Error {
  constructor(message, pos) {
    super(message);
    this.pos = pos;
  }
}

// Validates `text` as JSON (RFC 8259); throws JsonSyntaxError with the offset of the problem.
export function checkJson(text) {
  let i = 0;
  const n = text.length;
  const fail = (msg, at = i) => { throw new JsonSyntaxError(msg, at); };
  const ws = () => { while (i < n && ' \t\n\r'.includes(text[i])) i++; };
  const describe = () => (i >= n ? 'end of text' : `'${text[i]}'`);
  const literal = (word) => {
    if (text.startsWith(word, i)) i += word.length;
    else fail(`invalid literal: did you mean ${word}?`);
  };
  const string = () => {
    i++; // opening quote
    while (i < n) {
      const c = text[i];
      if (c === '"') { i++; return; }
      if (c === '\\') {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('bad \\u escape: expected 4 hex digits', i);
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else fail(`bad escape '\\${e === undefined ? '' : e}' in a string`, i);
      } else if (c < ' ') fail(c === '\n' ? 'unterminated string (a newline inside a string must be written \\n)' : 'control character inside a string');
      else i++;
    }
    fail('unterminated string');
  };
  const number = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === '-') fail('malformed number');
    i += m[0].length;
  };
  const value = (depth) => {
    if (depth > 500) fail('nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++; ws();
      if (text[i] === '}') { i++; return; }
      for (;;) {
        ws();
        if (text[i] !== '"') {
          if (text[i] === '}') fail('trailing comma before }');
          fail(text[i] === "'" ? 'property names take double quotes, not \'' : `unexpected ${describe()}: expected a "quoted" property name`);
        }
        string(); ws();
        if (text[i] !== ':') fail(`unexpected ${describe()}: expected ':' after the property name`);
        i++;
        value(depth + 1); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return; }
        fail(`unexpected ${describe()}: expected ',' or '}'`);
      }
    } else if (c === '[') {
      i++; ws();
      if (text[i] === ']') { i++; return; }
      for (;;) {
        ws();
        if (text[i] === ']') fail('trailing comma before ]');
        value(depth + 1); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return; }
        fail(`unexpected ${describe()}: expected ',' or ']'`);
      }
    } else if (c === '"') string();
    else if (c === '-' || (c >= '0' && c <= '9')) number();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else if (c === "'") fail("strings take double quotes, not '");
    else fail(`unexpected ${describe()}: expected a value`);
  };
  value(0);
  ws();
  if (i < n) fail(`unexpected ${describe()} after the value`);
}

export function lineColumn(text, pos) {
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  const column = pos - before.lastIndexOf('\n');
  return { line, column };
}

// {ok: true, value} or {ok: false, message, pos, line, column}
export function validateJson(text) {
  if (!text.trim()) return { ok: true, value: {}, empty: true };
  try {
    checkJson(text);
  } catch (exc) {
    if (!(exc instanceof JsonSyntaxError)) throw exc;
    return { ok: false, message: exc.message, pos: exc.pos, ...lineColumn(text, exc.pos) };
  }
  return { ok: true, value: JSON.parse(text) };
}

export class JsonEditor {
  constructor({ value = '{}', onChange, onSubmit, rows = 14, label = 'Event (JSON)' } = {}) {
    this.onChange = onChange;
    this.onSubmit = onSubmit;
    this.gutter = h('div', { class: 'json-gutter', 'aria-hidden': 'true' });
    this.textarea = h('textarea', {
      class: 'json-input', spellcheck: 'false', autocomplete: 'off', autocapitalize: 'off',
      rows, 'aria-label': label, wrap: 'off',
    });
    this.textarea.value = value;
    this.status = h('div', { class: 'json-status', role: 'status' });
    this.box = h('div', { class: 'json-box' }, this.gutter, this.textarea);
    this.el = h('div', { class: 'json-editor' }, this.box, this.status);
    this.textarea.addEventListener('input', () => this.update());
    this.textarea.addEventListener('scroll', () => { this.gutter.scrollTop = this.textarea.scrollTop; });
    this.textarea.addEventListener('keydown', (e) => this.keydown(e));
    this.update();
  }

  get value() { return this.textarea.value; }

  set value(text) {
    this.textarea.value = text;
    this.update();
  }

  update() {
    const text = this.textarea.value;
    const lines = text.split('\n').length;
    if (this.gutter.childElementCount !== lines) {
      const frag = document.createDocumentFragment();
      for (let k = 1; k <= lines; k++) frag.append(h('div', null, String(k)));
      this.gutter.replaceChildren(frag);
    }
    this.result = validateJson(text);
    this.status.replaceChildren();
    this.box.classList.toggle('json-invalid', !this.result.ok);
    for (const el of this.gutter.children) el.classList.remove('json-error-line');
    if (this.result.ok) {
      this.status.className = 'json-status json-ok';
      const kind = Array.isArray(this.result.value) ? 'array' : this.result.value === null ? 'null' : typeof this.result.value;
      this.status.append(this.result.empty ? 'Empty: the event will be {}' : `Valid JSON (${kind}, ${new Blob([text]).size} bytes)`);
    } else {
      const { line, column, message } = this.result;
      this.status.className = 'json-status json-bad';
      const jump = h('button', { type: 'button', class: 'link', onclick: () => this.focusError() }, `Line ${line}, column ${column}`);
      this.status.append(jump, `: ${message}`);
      const lineEl = this.gutter.children[line - 1];
      if (lineEl) lineEl.classList.add('json-error-line');
    }
    this.gutter.scrollTop = this.textarea.scrollTop;
    if (this.onChange) this.onChange(this.result);
  }

  focusError() {
    if (this.result.ok) return;
    this.textarea.focus();
    this.textarea.setSelectionRange(this.result.pos, Math.min(this.result.pos + 1, this.textarea.value.length));
  }

  format() {
    if (!this.result.ok) {
      this.focusError();
      return false;
    }
    this.value = JSON.stringify(this.result.value, null, 2);
    return true;
  }

  keydown(e) {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      e.preventDefault();
      if (this.onSubmit) this.onSubmit(e.shiftKey);
      return;
    }
    if (e.key === 'Tab' && !e.altKey && !e.ctrlKey && !e.metaKey) {
      // Indent with two spaces instead of leaving the field (Esc then Tab leaves it).
      if (this.escaped) return;
      e.preventDefault();
      const ta = this.textarea;
      const { selectionStart: start, selectionEnd: end } = ta;
      if (e.shiftKey) {
        const lineStart = ta.value.lastIndexOf('\n', start - 1) + 1;
        if (ta.value.startsWith('  ', lineStart)) {
          ta.setRangeText('', lineStart, lineStart + 2, 'preserve');
        }
      } else {
        ta.setRangeText('  ', start, end, 'end');
      }
      this.update();
      return;
    }
    this.escaped = e.key === 'Escape';
  }
}
