// Lets xterm.js's DOM renderer work under `style-src 'self'` (no 'unsafe-inline').
//
// xterm 6's DOM renderer styles itself in two ways CSP blocks without 'unsafe-inline':
//  1. <style> elements it creates and fills through `textContent`: the theme (colours, font,
//     cursor, selection: DomRenderer._injectCss), the rows' span layout
//     (DomRenderer._updateDimensions) and the scrollbar (Viewport). Blocked, the rows lose
//     their font (cells misalign), the 16/256-colour palette, the cursor and the selection.
//  2. `setAttribute('style', ...)` for true-colour (24-bit) cells and contrast fixes
//     (DomRendererRowFactory._addStyle). Blocked, true-colour text keeps the default colour.
// What CSP does not govern is the CSSOM: `element.style.*`, `style.cssText` and constructed
// stylesheets (`new CSSStyleSheet()` + `document.adoptedStyleSheets`). So:
//  1. while the terminal is opened (`withStyleBridge(() => term.open(el))`), the <style> that
//     xterm asks for is an inert <template data-xterm-style> instead (Chrome checks the CSP on
//     any <style> inserted, even an empty one or one of another `type`), whose `textContent`
//     goes into a constructed stylesheet adopted by the document; `remove()` drops that sheet;
//  2. `setAttribute('style', v)` on an element becomes `element.style.cssText = v`.
// Neither weakens the policy against injected markup: the HTML parser never goes through
// these paths, so a `style=` attribute or a <style> in parsed markup stays blocked.

let patchedSetAttribute = false;

function patchSetAttribute() {
  if (patchedSetAttribute) return;
  patchedSetAttribute = true;
  const native = Element.prototype.setAttribute;
  Element.prototype.setAttribute = function setAttribute(name, value) {
    if (typeof name === 'string' && name.toLowerCase() === 'style' && this.style) {
      this.style.cssText = String(value);
      return;
    }
    return native.call(this, name, value);
  };
}

function adoptedStyleElement(doc, native) {
  const element = native.call(doc, 'template');
  element.dataset.xtermStyle = '';
  const sheet = new CSSStyleSheet();
  let text = '';
  let adopted = false;
  Object.defineProperty(element, 'textContent', {
    configurable: true,
    get: () => text,
    set: (value) => {
      text = value == null ? '' : String(value);
      sheet.replaceSync(text);
      if (!adopted) {
        doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
        adopted = true;
      }
    },
  });
  const nativeRemove = element.remove;
  element.remove = function remove() {
    if (adopted) {
      doc.adoptedStyleSheets = doc.adoptedStyleSheets.filter((s) => s !== sheet);
      adopted = false;
    }
    return nativeRemove.call(this);
  };
  return element;
}

/** Runs `open` (e.g. `() => term.open(el)`) with xterm's <style> elements redirected. */
export function withStyleBridge(open, doc = document) {
  patchSetAttribute();
  const native = doc.createElement;
  doc.createElement = function createElement(tag, options) {
    if (typeof tag === 'string' && tag.toLowerCase() === 'style') return adoptedStyleElement(doc, native);
    return native.call(this, tag, options);
  };
  try {
    return open();
  } finally {
    delete doc.createElement;
    if (doc.createElement !== native) doc.createElement = native;
  }
}
