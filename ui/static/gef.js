// GEF web GUI: small improvements over pages that work without them.
// - relative times stay fresh;
// - a running job's (or build's) log follows live (server-sent events) and
//   its state, timeline and outputs update in place, until it ends;
// - run forms say what is wrong with a field as it is typed.
(function () {
  'use strict';

  // The final states of jobs and of builds.
  var FINAL = { succeeded: true, failed: true, system_error: true, canceled: true, done: true };

  // relative mirrors the server's wording of a time from now.
  function relative(t, now) {
    var d = (now - t) / 1000, future = d < 0, s;
    if (future) { d = -d; }
    if (d < 10) { return 'just now'; }
    if (d < 60) { s = Math.floor(d) + ' s'; }
    else if (d < 3600) { s = Math.floor(d / 60) + ' min'; }
    else if (d < 48 * 3600) { s = Math.floor(d / 3600) + ' h'; }
    else if (d < 60 * 86400) { s = Math.floor(d / 86400) + ' days'; }
    else { return null; }
    return future ? 'in ' + s : s + ' ago';
  }

  function refreshTimes(root) {
    var now = Date.now();
    root.querySelectorAll('time[data-rel]').forEach(function (el) {
      var t = Date.parse(el.getAttribute('datetime'));
      var s = isNaN(t) ? null : relative(t, now);
      if (s) { el.textContent = s; }
    });
  }

  // followJob keeps a job's (or a build's) page current while it runs.
  function followJob(box) {
    var noun = box.getAttribute('data-noun') || 'job';
    var running = box.getAttribute('data-running') || 'running'; // the state output comes in
    var logWord = box.getAttribute('data-log-word') || 'log';
    var log = document.getElementById('log');
    var status = document.getElementById('log-status');
    var ended = false, timer = null, source = null, opened = false, busy = false;

    function atBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 24; }

    function append(stream, text) {
      var stick = atBottom();
      var node = document.createTextNode(text);
      if (stream === 'stderr') {
        var span = document.createElement('span');
        span.className = 'stderr';
        span.appendChild(node);
        node = span;
      }
      log.appendChild(node);
      // Keep the page light: the whole log is a link away.
      while (log.textContent.length > 2000000 && log.firstChild) { log.removeChild(log.firstChild); }
      if (stick) { log.scrollTop = log.scrollHeight; }
    }

    // swap fetches the changing parts of the page and puts them in place.
    function swap() {
      if (busy) { return Promise.resolve(); }
      busy = true;
      return fetch(box.getAttribute('data-live-url'), { credentials: 'same-origin', headers: { Accept: 'text/html' } })
        .then(function (r) {
          // Sent to the sign-in page: the session ended, so stop asking.
          if (r.redirected) { ended = true; clearTimeout(timer); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null) { return; }
          var doc = new DOMParser().parseFromString(html, 'text/html');
          // Live parts sit anywhere on the page: the provenance and the
          // citation, for one, appear below the log once the job ends.
          doc.querySelectorAll('[data-live]').forEach(function (fresh) {
            var old = document.querySelector('[data-live="' + fresh.getAttribute('data-live') + '"]');
            if (old) { old.replaceWith(document.importNode(fresh, true)); }
          });
          refreshTimes(document);
          var st = box.querySelector('[data-state]');
          if (st && FINAL[st.getAttribute('data-state')]) {
            box.setAttribute('data-final', 'true');
            if (!source) { finish(); }
          }
        })
        .catch(function () { /* the next tick tries again */ })
        .then(function () { busy = false; });
    }

    function tick() {
      if (ended) { return; }
      swap().then(function () {
        if (!ended) { timer = setTimeout(tick, 1500); }
      });
    }

    function finish() {
      if (ended) { return; }
      ended = true;
      clearTimeout(timer);
      if (source) { source.close(); source = null; }
      if (status) { status.textContent = log.textContent ? 'The ' + noun + ' has ended; this is its whole ' + logWord + '.' : 'The ' + noun + ' has ended. It wrote nothing.'; }
      swap();
    }

    if (window.EventSource) {
      source = new EventSource(box.getAttribute('data-logs'));
      source.addEventListener('open', function () {
        // The stream replays the log from its start, after a reconnect too.
        if (!opened || log.textContent) { log.textContent = ''; }
        opened = true;
      });
      source.addEventListener('log', function (e) {
        var m = JSON.parse(e.data);
        append(m.stream, m.text);
        // Output means the job runs: show it now rather than at the next tick.
        var st = box.querySelector('[data-state]');
        if (st && st.getAttribute('data-state') !== running && !ended) {
          clearTimeout(timer);
          timer = setTimeout(tick, 50);
        }
      });
      source.addEventListener('end', function () {
        if (source) { source.close(); source = null; }
        finish();
      });
      source.addEventListener('error', function () {
        // EventSource reconnects by itself; once closed, the poll below
        // still notices the end.
        if (source && source.readyState === EventSource.CLOSED) { source = null; }
      });
    }
    timer = setTimeout(tick, 1000);
  }

  // hintForms says what is wrong with a field as it is typed. Patterns come
  // from labels in Go's regexp syntax; one that JavaScript reads otherwise
  // is left to the server, which checks every field anyway.
  function hintForms() {
    document.querySelectorAll('form[data-hints]').forEach(function (form) {
      form.querySelectorAll('input[data-pattern]').forEach(function (el) {
        try { el.gefPattern = new RegExp('^(?:' + el.getAttribute('data-pattern') + ')$', 'u'); } catch (e) { el.gefPattern = null; }
      });
      function check(el) {
        var field = el.closest('.field');
        var err = field && field.querySelector('.error');
        if (!err) { return; }
        var msg = el.validity.valid ? '' : el.validationMessage;
        if (!msg && el.gefPattern && el.value !== '' && !el.gefPattern.test(el.value)) {
          msg = 'Must match ' + el.getAttribute('data-pattern') + '.';
        }
        err.textContent = msg;
        err.hidden = !msg;
        field.classList.toggle('has-error', !!msg);
        if (msg) { el.setAttribute('aria-invalid', 'true'); } else { el.removeAttribute('aria-invalid'); }
      }
      ['input', 'change'].forEach(function (type) {
        form.addEventListener(type, function (e) {
          if (e.target.matches('input, select, textarea')) { check(e.target); }
        });
      });
      form.addEventListener('invalid', function (e) { check(e.target); }, true);
    });
  }

  document.addEventListener('DOMContentLoaded', function () {
    document.documentElement.classList.add('js');
    refreshTimes(document);
    setInterval(function () { refreshTimes(document); }, 30000);
    var box = document.getElementById('job') || document.getElementById('build');
    if (box && box.getAttribute('data-final') !== 'true' && document.getElementById('log')) { followJob(box); }
    hintForms();
  });
}());
