// SPDX-License-Identifier: ISC
//
// app.js -- keel's page (README "The page"): log in, the user's
// notifications and their live stream, and for a student the latest result
// and that test's leaderboard.  No framework, no build step.
//
// The session token lives in memory and in sessionStorage (this tab only),
// never in a URL.  The stream: EventSource cannot send headers, so each
// connection uses a single-use ticket (POST /api/notifications/stream-ticket)
// in its query string.  EventSource's own reconnect would reuse the spent
// ticket and send Last-Event-ID only to that same URL, so on any error, and
// on the server's "event: reconnect", the page closes the EventSource and
// opens a new one with a fresh ticket and lastEventId = the newest id it
// holds: the server replays what came after it from PostgreSQL.  The
// server's "event: end" says the session ended (a logout elsewhere, the
// account deactivated, its password or role changed) or expired: the page
// goes back to the form at once, asking for no ticket it would be refused.
// Notifications are kept by id, so none is shown twice.
//
// window.keelState is what tests read (tests/e2e/test_browser.py); it holds
// no secret.
'use strict';

(function () {
	const TOKEN_KEY = 'keel.token';
	const LIST_LIMIT = 100;
	const BACKOFF_MIN = 500;	// ms, the first retry after an error
	const BACKOFF_MAX = 4000;	// ms
	const JITTER = 500;		// ms, so that a restart's streams spread out

	const $ = (id) => document.getElementById(id);

	const state = {
		token: null,
		user: null,
		items: new Map(),	// notification id -> item
		lastId: 0,		// the newest id held: the replay starts after it
		es: null,		// the open EventSource
		generation: 0,		// bumped by every (re)open and by logout
		session: 0,		// bumped by every login and logout
		timer: null,		// a scheduled reopen
		failures: 0,		// errors since the last successful open
		studentLoad: null,	// a pending reload of the student panel
	};

	const keelState = {
		received: [],		// every notification id the stream delivered, in order
		duplicates: 0,		// of those, ids the page already held (not shown again)
		opens: 0,		// EventSources opened
		reconnects: 0,		// "event: reconnect" received
		ends: 0,		// "event: end" received (the session is over)
		errors: 0,		// errors (connection or "event: error")
		connected: false,
		ready: false,		// logged in, list loaded, first stream opening
		get lastEventId() { return state.lastId; },
		get userId() { return state.user ? state.user.id : null; },
		ids() { return Array.from(state.items.keys()).sort((a, b) => a - b); },
	};
	window.keelState = keelState;

	// ------------------------------------------------------------ HTTP

	class ApiError extends Error {
		constructor(status, body) {
			super(body && body.message ? body.message : 'HTTP ' + status);
			this.status = status;
			this.body = body;
		}
	}

	async function api(method, path, body) {
		const headers = { 'Accept': 'application/json' };
		if (state.token) {
			headers['Authorization'] = 'Bearer ' + state.token;
		}
		const init = { method, headers, cache: 'no-store', credentials: 'omit' };
		if (body !== undefined) {
			headers['Content-Type'] = 'application/json';
			init.body = JSON.stringify(body);
		}
		const r = await fetch(path, init);
		let data = null;
		try {
			data = await r.json();
		} catch (e) {
			data = null;
		}
		if (!r.ok) {
			if (r.status === 401 && state.token) {
				logout('Your session has ended; log in again.', false);
			}
			throw new ApiError(r.status, data);
		}
		return data;
	}

	// ---------------------------------------------------------- session

	async function onLogin(ev) {
		ev.preventDefault();
		const err = $('login-error');
		err.textContent = '';
		$('login-submit').disabled = true;
		try {
			const data = await api('POST', '/api/auth/login', {
				login: $('login').value,
				password: $('password').value,
			});
			$('password').value = '';
			state.token = data.token;
			state.user = data.user;
			sessionStorage.setItem(TOKEN_KEY, data.token);
			await start();
		} catch (e) {
			if (state.token === null) {
				err.textContent = e.status === 401 ?
				    'Wrong login or password.' :
				    'Could not log in: ' + e.message;
			} else {
				// Logged in, but the list failed: back to the form,
				// saying so.
				logout('Could not load your notifications: ' +
				    e.message);
			}
		} finally {
			$('login-submit').disabled = false;
		}
	}

	async function resume() {
		const token = sessionStorage.getItem(TOKEN_KEY);
		if (!token) {
			return;
		}
		state.token = token;
		try {
			state.user = await api('GET', '/api/auth/me');
			await start();
		} catch (e) {
			if (e.status !== 401) {		// (a 401 logged out already)
				logout('Could not resume your session: ' + e.message);
			}
		}
	}

	// logout -- back to the form (saying why, if given); the session ends on
	// the server too unless it already has (endSession false).
	function logout(why, endSession = true) {
		const token = state.token;
		state.generation++;
		state.session++;
		closeStream();
		clearTimeout(state.timer);
		state.token = null;
		state.user = null;
		state.items.clear();
		state.lastId = 0;
		keelState.ready = false;
		sessionStorage.removeItem(TOKEN_KEY);
		$('notifications').replaceChildren();
		$('leaderboard').tBodies[0].replaceChildren();
		$('app-view').hidden = true;
		$('logout').hidden = true;
		$('who').textContent = '';
		$('login-view').hidden = false;
		$('login-error').textContent = why || '';
		if (token && endSession) {
			// Best effort: the server ends the session at once.
			fetch('/api/auth/logout', { method: 'POST', credentials: 'omit',
			    headers: { 'Authorization': 'Bearer ' + token } }).catch(() => {});
		}
	}

	async function start() {
		state.session++;
		$('login-view').hidden = true;
		$('app-view').hidden = false;
		$('logout').hidden = false;
		$('who').textContent = state.user.name + ' (' + state.user.role + ')';
		const student = state.user.role === 'student';
		$('student-panel').hidden = !student;
		await loadNotifications();
		keelState.ready = true;
		openStream();
		if (student) {
			loadStudent();
		}
	}

	// ---------------------------------------------------- notifications

	async function loadNotifications() {
		const page = await api('GET', '/api/notifications?limit=' + LIST_LIMIT);
		for (const item of page.data) {
			add(item);
		}
		render();
	}

	// add -- keep item (keyed by id); false when it was already held.
	function add(item) {
		if (state.items.has(item.id)) {
			return false;
		}
		state.items.set(item.id, item);
		if (item.id > state.lastId) {
			state.lastId = item.id;
		}
		const li = document.createElement('li');
		li.dataset.id = String(item.id);
		li.className = item.kind + (item.readAt === null ? ' unread' : '');
		const title = document.createElement('span');
		title.className = 'title';
		title.textContent = item.title;
		const time = document.createElement('time');
		time.dateTime = item.createdAt;
		time.textContent = new Date(item.createdAt).toLocaleString();
		const body = document.createElement('p');
		body.className = 'body';
		body.textContent = item.body;
		li.append(title, time, body);
		// Newest first: before the first one that is older.
		const list = $('notifications');
		let before = null;
		for (const other of list.children) {
			if (Number(other.dataset.id) < item.id) {
				before = other;
				break;
			}
		}
		list.insertBefore(li, before);
		return true;
	}

	function render() {
		$('notifications-empty').hidden = state.items.size > 0;
	}

	function receive(item) {
		keelState.received.push(item.id);
		if (!add(item)) {
			keelState.duplicates++;
			return;
		}
		render();
		if (item.kind === 'attempt_graded' && state.user.role === 'student') {
			// A new result: the panel and the board follow it.
			clearTimeout(state.studentLoad);
			state.studentLoad = setTimeout(loadStudent, 200);
		}
	}

	// ----------------------------------------------------------- stream

	function setConnected(on) {
		keelState.connected = on;
		const s = $('stream-status');
		s.textContent = on ? 'live' : 'reconnecting';
		s.className = 'status ' + (on ? 'on' : 'off');
	}

	function closeStream() {
		if (state.es) {
			state.es.close();
			state.es = null;
		}
		setConnected(false);
	}

	// reopen -- close the stream and open a new one after delay ms.
	function reopen(delay) {
		closeStream();
		clearTimeout(state.timer);
		const gen = ++state.generation;
		state.timer = setTimeout(() => {
			if (gen === state.generation) {
				openStream();
			}
		}, delay + Math.random() * JITTER);
	}

	function backoff() {
		const d = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** state.failures);
		state.failures++;
		return d;
	}

	async function openStream() {
		closeStream();
		const gen = ++state.generation;
		let ticket;
		try {
			ticket = (await api('POST', '/api/notifications/stream-ticket')).ticket;
		} catch (e) {
			if (gen === state.generation && state.token) {
				keelState.errors++;
				reopen(backoff());
			}
			return;
		}
		if (gen !== state.generation || !state.token) {
			return;		// logged out or reopened meanwhile
		}
		const es = new EventSource('/api/notifications/stream?ticket=' +
		    encodeURIComponent(ticket) + '&lastEventId=' + state.lastId);
		state.es = es;
		keelState.opens++;
		es.onopen = () => {
			if (es === state.es) {
				state.failures = 0;
				setConnected(true);
			}
		};
		es.addEventListener('notification', (ev) => {
			if (es === state.es) {
				receive(JSON.parse(ev.data));
			}
		});
		// The server is going away (restart, roll): come back at once.
		es.addEventListener('reconnect', () => {
			if (es === state.es) {
				keelState.reconnects++;
				reopen(0);
			}
		});
		// The session is over: nothing to reopen.
		es.addEventListener('end', () => {
			if (es === state.es) {
				keelState.ends++;
				logout('Your session has ended; log in again.', false);
			}
		});
		// A lost connection (EventSource would retry with the spent
		// ticket) or the server's "event: error" (its database failed):
		// a new ticket after a growing pause.
		es.addEventListener('error', () => {
			if (es === state.es) {
				keelState.errors++;
				reopen(backoff());
			}
		});
	}

	// ---------------------------------------------------------- student

	async function loadStudent() {
		const session = state.session;
		let latest = null;
		let board = null;
		try {
			const page = await api('GET', '/api/attempts?limit=20');
			for (const a of page.data) {
				if (a.submittedAt !== null && (latest === null ||
				    a.submittedAt > latest.submittedAt)) {
					latest = a;
				}
			}
			if (latest !== null) {
				board = await api('GET', '/api/leaderboard?limit=10&testId=' +
				    latest.testId);
			}
		} catch (e) {
			$('result').textContent = 'Could not load results: ' + e.message;
			return;
		}
		if (session !== state.session) {
			return;		// logged out meanwhile
		}
		showResult(latest);
		showBoard(latest, board);
	}

	function showResult(a) {
		const p = $('result');
		if (a === null) {
			p.textContent = 'No graded attempt yet.';
			delete p.dataset.attemptId;
			return;
		}
		p.dataset.attemptId = String(a.id);
		p.textContent = (a.test ? a.test.title : 'Test ' + a.testId) + ': ' +
		    a.score + '% (' + a.correct + ' of ' + a.total + ' correct' +
		    (a.late ? ', late' : '') + ')';
	}

	function showBoard(a, board) {
		const body = $('leaderboard').tBodies[0];
		body.replaceChildren();
		$('board-title').textContent = a && a.test ? a.test.title : '';
		if (board === null) {
			return;
		}
		for (const e of board.data) {
			const tr = document.createElement('tr');
			tr.dataset.userId = String(e.userId);
			if (e.userId === state.user.id) {
				tr.className = 'me';
			}
			for (const v of [e.rank, e.name, e.score + '%', e.attempts]) {
				const td = document.createElement('td');
				td.textContent = String(v);
				tr.append(td);
			}
			body.append(tr);
		}
	}

	// ------------------------------------------------------------- wiring

	document.addEventListener('DOMContentLoaded', () => {
		$('login-form').addEventListener('submit', onLogin);
		$('logout').addEventListener('click', () => logout());
		resume();
	});
}());
