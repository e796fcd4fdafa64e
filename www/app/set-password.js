// SPDX-License-Identifier: ISC
//
// set-password.js -- the page an invitation or password-reset email links
// to (KEEL_PUBLIC_URL/set-password?token=..., README "The page"): the new
// password, typed twice, goes with the link's token to
// POST /api/auth/password-reset/confirm.
//
// The token is a secret that works once (72 h for an invitation, 1 h for
// a reset).  The page reads it from the query string and takes it out of
// the address bar at once (history.replaceState), so that it stays out of
// the history, of a bookmark or a copied address; it lives in this
// script's memory only, and is dropped once used.  A reload therefore
// finds no token, and says to open the email's link again.
//
// The rules are the API's: the page checks only that the two passwords
// match, and shows the API's answer (a password too short, a link used,
// expired or invalid) as it says it.  The inputs' minlength is a hint for
// password managers; the form has novalidate, so the browser doesn't
// judge in the API's place (it counts UTF-16 units, the API characters).
'use strict';

(function () {
	const $ = (id) => document.getElementById(id);

	// Read and hidden before anything else can run or fail.
	let token = new URLSearchParams(location.search).get('token');
	if (location.search || location.hash) {
		history.replaceState(null, '', location.pathname);
	}

	// What each field the API may name is, in a sentence.
	const FIELD_NAMES = { password: 'The new password', token: 'The link' };

	function sentence(s) {
		s = String(s);
		return s.charAt(0).toUpperCase() + s.slice(1) +
		    (/[.!?]$/.test(s) ? '' : '.');
	}

	// message -- what to show for an error answer's body (null: none).
	function message(status, body) {
		if (body && body.fields && body.fields.password) {
			return sentence(FIELD_NAMES.password + ' ' +
			    body.fields.password);
		}
		if (body && body.message) {
			return sentence(body.message);
		}
		return 'The server answered ' + status + '; try again later.';
	}

	// linkDead -- the answer says the token can't be used: the form goes.
	function linkDead(body) {
		return body && body.fields && body.fields.token !== undefined;
	}

	async function onSubmit(ev) {
		ev.preventDefault();
		const err = $('set-error');
		const pw = $('password').value;
		err.textContent = '';
		if (pw === '') {
			err.textContent = 'Type your new password twice.';
			$('password').focus();
			return;
		}
		if (pw !== $('password2').value) {
			err.textContent = 'The two passwords differ; type them again.';
			$('password2').value = '';
			$('password2').focus();
			return;
		}
		$('set-submit').disabled = true;
		try {
			const r = await fetch('/api/auth/password-reset/confirm', {
				method: 'POST', cache: 'no-store', credentials: 'omit',
				headers: { 'Accept': 'application/json',
				    'Content-Type': 'application/json' },
				body: JSON.stringify({ token, password: pw }),
			});
			if (r.status === 204) {
				token = null;
				$('password').value = '';
				$('password2').value = '';
				$('set-view').hidden = true;
				$('done-view').hidden = false;
				$('login-link').focus();
				return;
			}
			let body = null;
			try {
				body = await r.json();
			} catch (e) {
				body = null;
			}
			err.textContent = message(r.status, body);
			if (linkDead(body)) {
				token = null;
				$('password').value = '';
				$('password2').value = '';
				$('set-form').hidden = true;
			}
		} catch (e) {
			err.textContent = 'Could not reach the server (' + e.message +
			    '); try again.';
		} finally {
			$('set-submit').disabled = false;
		}
	}

	document.addEventListener('DOMContentLoaded', () => {
		if (!token) {
			$('no-token').hidden = false;
			return;
		}
		$('set-form').addEventListener('submit', onSubmit);
		$('set-form').hidden = false;
		$('password').focus();
	});
}());
