// A modal question (<dialog>): resolves to the chosen action's value, or null when cancelled.

import { h } from './dom.js';

/**
 * ask({title, message, actions: [{label, value, danger}]}) -> Promise<value | null>
 * The dialog has id `confirm-dialog`; each action button has `data-value`, Cancel `data-value=""`.
 */
export function ask({ title, message, actions }) {
  return new Promise((resolve) => {
    const dialog = h('dialog', { id: 'confirm-dialog', class: 'dialog', 'aria-labelledby': 'confirm-title', 'aria-describedby': 'confirm-message' });
    const buttons = actions.map((a) =>
      h('button', { type: 'submit', value: a.value, class: a.danger ? 'danger' : 'primary', 'data-value': a.value, text: a.label }),
    );
    const cancel = h('button', { type: 'submit', value: '', 'data-value': '', text: 'Cancel' });
    dialog.append(
      h('form', { method: 'dialog' }, h('h2', { id: 'confirm-title', text: title }), h('p', { id: 'confirm-message', text: message }), h('div', { class: 'dialog-actions' }, cancel, ...buttons)),
    );
    dialog.addEventListener('close', () => {
      const value = dialog.returnValue;
      dialog.remove();
      resolve(value ? value : null);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
