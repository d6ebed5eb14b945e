// /login: signs in with the one-time code in the fragment (`/login#code=CODE`), or with the
// token typed into the form. The shim answers with an HttpOnly cookie; the page never keeps
// the token.

import { api } from '../api.js';
import { h } from '../dom.js';

const REASONS = {
  missing_token: 'You are not signed in.',
  invalid_token: 'Your sign-in is no longer valid (the token was changed, or the cookie expired).',
  logged_out: 'You signed out.',
};

function nextPath() {
  const next = new URLSearchParams(location.search).get('next');
  // Only a path of this site: never `//host` or a URL.
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/login') ? next : '/';
}

export function mount(main, _params, { navigate, handle }) {
  const reason = history.state && history.state.reason;
  const reasonText = h('p', { id: 'login-reason', class: 'login-reason' });
  const error = h('p', { id: 'login-error', class: 'error', role: 'alert' });
  const input = h('input', {
    id: 'login-token',
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
    spellcheck: 'false',
    'aria-describedby': 'login-help login-error',
  });
  const submit = h('button', { id: 'login-submit', type: 'submit', class: 'primary', text: 'Sign in' });
  const form = h(
    'form',
    { id: 'login-form', class: 'login-form', novalidate: true },
    h('label', { for: 'login-token', text: 'Token' }),
    input,
    h('p', { id: 'login-help', class: 'help' }, 'The token is in ', h('code', { text: '<state dir>/http-token' }), ' on the server; ', h('code', { text: 'aifactory-http --print-token' }), ' prints it. Or open the one-time sign-in link it prints.'),
    submit,
    error,
  );
  main.append(h('section', { class: 'login', 'aria-labelledby': 'login-title' }, h('h1', { id: 'login-title', text: 'Sign in to aifactory' }), reasonText, form));
  const state = { state: 'idle', reason: reason || null, error: null };
  handle.login = state;

  if (reason) {
    const friendly = REASONS[reason.code];
    reasonText.textContent = friendly || reason.message;
    if (friendly && reason.message && reason.code !== 'logged_out') {
      reasonText.append(' ', h('span', { class: 'detail', text: `(${reason.code}: ${reason.message})` }));
    }
  } else {
    reasonText.hidden = true;
  }

  let gone = false;
  async function signIn(credential, how) {
    state.state = 'signing_in';
    error.textContent = '';
    submit.disabled = true;
    submit.textContent = how === 'code' ? 'Signing in with the link…' : 'Signing in…';
    try {
      await api.login(credential);
      state.state = 'signed_in';
      if (!gone) navigate(nextPath(), null, { replace: true });
    } catch (e) {
      state.state = 'failed';
      state.error = { code: e.code, message: e.message };
      if (gone) return;
      error.textContent = how === 'code' ? `The sign-in link did not work: ${e.message}` : e.message;
      submit.disabled = false;
      submit.textContent = 'Sign in';
      input.focus();
    }
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = 'Enter the token.';
      input.focus();
      return;
    }
    input.value = '';
    signIn({ token }, 'token');
  });

  // The one-time code rides in the fragment, which never reaches a server log; take it out
  // of the address bar (and the history) before anything else.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const code = fragment.get('code');
  if (code) {
    history.replaceState(history.state, '', location.pathname + location.search);
    signIn({ code }, 'code');
  } else {
    input.focus();
  }
  return () => {
    gone = true;
    if (handle.login === state) handle.login = null;
  };
}
