/* Qualifier dashboard: local times, running-call timers and live updates.
 *
 * Live updates poll `/live?after_seq=N` (with the page's filters): the answer holds only what
 * changed since N. Polls run every second while the tab is visible and every 15 s while it is
 * hidden. New rows are added without touching existing ones, so open rows, focus, form input
 * and the scroll position stay as they were. Captured text is untrusted: it is only ever put
 * in the page with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var VISIBLE_MS = 1000;
  var HIDDEN_MS = 15000;
  var MAX_BACKOFF_MS = 15000;
  var REQUEST_TIMEOUT_MS = 8000;

  var body = document.body;
  var state = document.getElementById("state");
  var lastSeq = state ? Number(state.dataset.lastSeq || 0) : 0;
  var lastOk = Date.now();
  var failures = 0;
  var timer = null;
  var stopped = false;

  // ---- time zone and local times -----------------------------------------------------------
  function rememberTimeZone() {
    try {
      var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      if (!zone) return;
      var secure = location.protocol === "https:" ? "; Secure" : "";
      document.cookie = "tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Strict" + secure;
    } catch (e) { /* an old browser: the server falls back to the business time zone */ }
  }

  var sameDay = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", second: "2-digit" });
  var otherDay = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "numeric", minute: "2-digit"
  });
  var full = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

  function localise(el) {
    var when = new Date(el.getAttribute("datetime"));
    if (isNaN(when.getTime())) return;
    var today = new Date();
    var same = when.toDateString() === today.toDateString();
    el.textContent = same ? "Today " + sameDay.format(when) : otherDay.format(when);
    el.title = full.format(when);
  }

  function localiseAll(root) {
    var times = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) localise(times[i]);
  }

  function elapsedText(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return h ? h + "h " + two(m) + "m" : m + "m " + two(sec) + "s";
  }

  function tickElapsed() {
    var els = document.querySelectorAll(".elapsed[data-since]");
    for (var i = 0; i < els.length; i++) {
      var since = Date.parse(els[i].dataset.since);
      if (!isNaN(since)) els[i].textContent = elapsedText(Date.now() - since);
    }
  }

  // ---- status line and notices -------------------------------------------------------------
  function setStatus() {
    var box = document.getElementById("live-status");
    var text = document.getElementById("live-text");
    if (!box || !text) return;
    if (stopped) return;
    var ago = Math.round((Date.now() - lastOk) / 1000);
    var when = ago < 2 ? "just now" : ago < 120 ? ago + " s ago" : Math.round(ago / 60) + " min ago";
    var slow = document.visibilityState === "hidden" ? " (checking every 15 s while hidden)" : "";
    text.textContent = (failures ? "Last updated " : "Live · updated ") + when + slow;
    box.classList.toggle("ok", failures === 0);
    box.classList.toggle("down", failures > 0);
  }

  function showOffline(delayMs, message) {
    var box = document.getElementById("offline");
    var text = document.getElementById("offline-text");
    if (!box) return;
    text.textContent = message || "Retrying in " + Math.round(delayMs / 1000) + " s.";
    box.hidden = false;
  }

  function hideOffline() {
    var box = document.getElementById("offline");
    if (box) box.hidden = true;
  }

  function signedOut() {
    stopped = true;
    var box = document.getElementById("offline");
    var text = document.getElementById("offline-text");
    if (!box) return;
    box.firstElementChild.textContent = "You are signed out.";
    text.textContent = "";
    var link = document.createElement("a");
    link.href = body.dataset.loginUrl + "?next=" + encodeURIComponent(location.pathname + location.search);
    link.textContent = "Sign in again";
    text.appendChild(link);
    text.appendChild(document.createTextNode(" to resume live updates."));
    box.hidden = false;
    var status = document.getElementById("live-text");
    if (status) status.textContent = "Live updates stopped";
  }

  function showBehind(message) {
    var box = document.getElementById("behind");
    if (!box) return;
    var url = new URL(location.href);
    url.searchParams.delete("cursor");
    url.searchParams.delete("calls_cursor");
    document.getElementById("behind-text").textContent = message;
    document.getElementById("behind-link").href = url.pathname + url.search;
    box.hidden = false;
  }

  // ---- building rows from <template>s, with textContent only -------------------------------
  function fromTemplate(id) {
    return document.getElementById(id).content.firstElementChild.cloneNode(true);
  }

  function sessionUrl(sid) {
    return body.dataset.sessionUrl.replace("SESSION_ID", encodeURIComponent(sid));
  }

  function callerUrl(caller) {
    return body.dataset.overviewUrl + "?caller=" + encodeURIComponent(caller);
  }

  function setTime(el, iso) {
    el.setAttribute("datetime", iso);
    localise(el);
  }

  function recordNode(r, withCaller) {
    var node = fromTemplate("tpl-record");
    node.dataset.seq = r.seq;
    setTime(node.querySelector("time"), r.timestamp);
    var badge = node.querySelector(".badge");
    badge.textContent = r.category_label;
    badge.classList.add("cat-" + r.category);
    var caller = node.querySelector(".caller");
    var open = node.querySelector(".open");
    if (withCaller) {
      caller.textContent = r.caller_display;
      caller.href = callerUrl(r.caller_id);
      open.href = sessionUrl(r.session_id);
    } else {
      caller.remove();
      open.remove();
    }
    node.querySelector(".rec-text").textContent = r.information;
    if (r.fields_display && r.fields_display.length) {
      var details = node.querySelector("details");
      var tbody = details.querySelector("tbody");
      r.fields_display.forEach(function (pair) {
        var row = fromTemplate("tpl-field-row");
        row.querySelector("th").textContent = pair[0];
        row.querySelector("td").textContent = pair[1];
        tbody.appendChild(row);
      });
      details.hidden = false;
    } else {
      node.querySelector("details").remove();
    }
    return node;
  }

  function setFlag(badge, text) {
    badge.textContent = text || "";
    badge.hidden = !text;
  }

  function callNode(c) {
    var node = fromTemplate("tpl-call");
    node.dataset.seq = c.seq;
    node.dataset.sid = c.session_id;
    setTime(node.querySelector("time"), c.ended_at);
    var caller = node.querySelector(".caller");
    caller.textContent = c.caller_display;
    caller.href = callerUrl(c.caller_id);
    var badge = node.querySelector(".badge");
    badge.textContent = c.outcome_label;
    badge.classList.add("out-" + c.outcome);
    node.querySelector(".reason").textContent = c.reason;
    setFlag(node.querySelector(".flag"), c.flag_display);
    node.querySelector(".duration").textContent = c.duration_display;
    node.querySelector(".count").textContent = c.information_count;
    node.querySelector(".open").href = sessionUrl(c.session_id);
    return node;
  }

  function fillActive(row, s) {
    var caller = row.querySelector(".caller");
    caller.textContent = s.caller_display;
    caller.href = sessionUrl(s.session_id);
    setFlag(row.querySelector(".flag"), s.flag_display);
    var elapsed = row.querySelector(".elapsed");
    elapsed.dataset.since = s.started_at;
    var badge = row.querySelector(".newest .badge");
    var text = row.querySelector(".newest-text");
    badge.className = "badge";
    if (s.newest) {
      badge.classList.add("cat-" + s.newest.category);
      badge.textContent = s.newest.category_label;
      text.textContent = s.newest.information;
    } else {
      badge.classList.add("muted");
      badge.textContent = "Waiting";
      text.textContent = "Nothing captured yet";
    }
  }

  // ---- keeping the scroll position ---------------------------------------------------------
  /* The first row or heading whose top is on screen (else the one the top of the screen is in).
   * Never a container such as a card: rows added inside it would not move its top. */
  function firstVisible() {
    var items = document.querySelectorAll(
      "main h1, main h2, main h3, main [data-seq], main [data-sid], main form, main .pager, main .empty, main .sub"
    );
    var fallback = null;
    for (var i = 0; i < items.length; i++) {
      var rect = items[i].getBoundingClientRect();
      if (!rect.width && !rect.height) continue; // hidden
      if (rect.top >= 0 && rect.top < window.innerHeight) return items[i];
      if (!fallback && rect.bottom > 0) fallback = items[i];
    }
    return fallback;
  }

  /* Run `change` (which adds rows) so that what the user is looking at stays where it is. */
  function keepingScroll(change) {
    if (window.scrollY <= 0) { change(); return; }
    var anchor = firstVisible();
    var before = anchor ? anchor.getBoundingClientRect().top : 0;
    change();
    if (anchor && anchor.isConnected) {
      var delta = anchor.getBoundingClientRect().top - before;
      if (delta) window.scrollBy(0, delta);
    }
  }

  // ---- applying changes --------------------------------------------------------------------
  function setCounts(summary) {
    var els = document.querySelectorAll("[data-count]");
    for (var i = 0; i < els.length; i++) {
      var key = els[i].dataset.count;
      if (key in summary) els[i].textContent = summary[key];
    }
    var chart = document.getElementById("category-chart");
    if (!chart || !summary.by_category) return;
    var values = summary.by_category;
    var top = Math.max.apply(null, Object.keys(values).map(function (k) { return values[k]; }).concat([1]));
    var desc = [];
    var bars = chart.querySelectorAll(".bar");
    for (var j = 0; j < bars.length; j++) {
      var n = values[bars[j].dataset.category] || 0;
      var w = Math.round(1700 * n / top) / 10;
      bars[j].querySelector("rect").setAttribute("width", w);
      var value = bars[j].querySelector(".value");
      value.setAttribute("x", 110 + w);
      value.textContent = n;
      desc.push(bars[j].querySelector(".label").textContent + ": " + n + ".");
    }
    chart.querySelector("desc").textContent = desc.join(" ");
  }

  function addRecords(list, records, withCaller, atTop, openFields) {
    var added = 0;
    records.forEach(function (r) {
      if (list.querySelector('[data-seq="' + r.seq + '"]')) return;
      var node = recordNode(r, withCaller);
      var details = node.querySelector("details");
      if (openFields && details) details.open = true;
      if (atTop) list.insertBefore(node, list.firstChild); else list.appendChild(node);
      added++;
    });
    return added;
  }

  function applyActive(active) {
    var tbody = document.getElementById("active-body");
    if (!tbody) return;
    var keep = {};
    active.sessions.forEach(function (s) { keep[s.session_id] = s; });
    Array.prototype.slice.call(tbody.rows).forEach(function (row) {
      if (!keep[row.dataset.sid]) row.remove();
    });
    var previous = null;
    active.sessions.forEach(function (s) {
      var row = tbody.querySelector('tr[data-sid="' + CSS.escape(s.session_id) + '"]');
      if (!row) {
        row = fromTemplate("tpl-active");
        row.dataset.sid = s.session_id;
        row.classList.add("row-new");
        tbody.insertBefore(row, previous ? previous.nextSibling : tbody.firstChild);
      }
      fillActive(row, s);
      previous = row;
    });
    document.getElementById("active-empty").hidden = active.sessions.length > 0;
    document.getElementById("active-count").textContent = active.count;
    document.getElementById("active-more").hidden = active.count <= active.sessions.length;
    tickElapsed();
  }

  function applyOverview(data) {
    setCounts(data.summary);
    if (!data.changed) return;
    var firstPage = state.dataset.firstPage === "1";
    if (data.records_more || data.calls_more) showBehind("Many updates arrived while this page was not looking.");
    keepingScroll(function () {
      applyActive(data.active);
      if (!firstPage) {
        if (data.records.length || data.calls.length) showBehind("New information has arrived.");
        return;
      }
      var feed = document.getElementById("feed");
      if (addRecords(feed, data.records, true, true)) document.getElementById("feed-empty").hidden = true;
      var calls = document.getElementById("calls-body");
      data.calls.slice().reverse().forEach(function (c) {
        var sid = CSS.escape(c.session_id);  // a flagged view's rows are sessions: known by id
        if (calls.querySelector('[data-seq="' + c.seq + '"], [data-sid="' + sid + '"]')) return;
        calls.insertBefore(callNode(c), calls.firstChild);
        document.getElementById("calls-empty").hidden = true;
      });
    });
  }

  // ---- the transcript and the disclosure flag of a call's page -------------------------------
  function transcriptNode(item) {
    var node;
    if (item.kind === "turn") {
      node = fromTemplate("tpl-turn");
      node.classList.add(item.speaker === "caller" ? "turn-caller" : "turn-agent");
      node.querySelector(".who").textContent = item.speaker_label;
      node.querySelector(".at").textContent = item.time_display;
      node.querySelector(".turn-text").textContent = item.text;
      node.querySelector(".cut").hidden = !item.interrupted;
      node.querySelector(".late").hidden = !item.after_call_log;
    } else if (item.kind === "tool") {
      node = fromTemplate("tpl-tool");
      if (item.is_error) node.classList.add("tool-error");
      node.querySelector(".at").textContent = item.time_display;
      node.querySelector(".tool-name").textContent = item.name;
      node.querySelector(".tool-args").textContent = item.arguments_display;
      node.querySelector(".tool-result").textContent = item.result_display;
      node.querySelector(".tool-failed").hidden = !item.is_error;
    } else {
      node = fromTemplate("tpl-saved");
      node.querySelector(".saved-category").textContent = item.category_label;
      node.querySelector(".saved-text").textContent = item.information;
    }
    node.dataset.seq = item.seq;
    return node;
  }

  /* Put `node` at its place by seq (nearly always the end). */
  function insertBySeq(list, node) {
    var seq = Number(node.dataset.seq);
    var before = list.lastElementChild;
    while (before && Number(before.dataset.seq) > seq) before = before.previousElementSibling;
    list.insertBefore(node, before ? before.nextSibling : list.firstChild);
  }

  /* Add the items not shown yet; true when the list was scrolled to its end (to follow it). */
  function addTranscript(list, items) {
    var atEnd = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    var spoken = 0;
    items.forEach(function (item) {
      if (list.querySelector('[data-seq="' + item.seq + '"]')) return;
      insertBySeq(list, transcriptNode(item));
      if (item.kind !== "saved") spoken++;
    });
    if (spoken) document.getElementById("transcript-empty").hidden = true;
    return atEnd;
  }

  function applyFlag(flag) {
    var badge = document.getElementById("disclosure-badge");
    var list = document.getElementById("heard-disclosures");
    var shown = JSON.stringify(flag);
    if (!badge || !list || list.dataset.shown === shown) return;
    list.dataset.shown = shown;
    badge.textContent = flag.badge;
    badge.className = "badge flag-" + flag.state;
    while (list.firstChild) list.removeChild(list.firstChild);
    flag.items.forEach(function (d) {
      var li = fromTemplate("tpl-heard");
      li.dataset.key = d.key;
      li.className = d.heard ? "heard" : "not-heard";
      li.querySelector(".mark").textContent = d.heard ? "\u2713" : "\u2717";
      li.querySelector(".label").textContent = d.label;
      li.querySelector(".state").textContent = d.heard ? "heard at " + d.at_display : "not heard";
      list.appendChild(li);
    });
    document.getElementById("heard-pending").hidden = flag.state !== "pending";
  }

  function applySession(data) {
    if (!data.changed) return;
    var transcript = document.getElementById("transcript");
    var follow = false;
    keepingScroll(function () {
      if (transcript && data.transcript) follow = addTranscript(transcript, data.transcript);
      if (data.disclosure_flag) applyFlag(data.disclosure_flag);
      var timeline = document.getElementById("timeline");
      if (addRecords(timeline, data.records, false, false)) document.getElementById("timeline-empty").hidden = true;
      data.records.forEach(function (r) {
        var group = document.querySelector('.group[data-category="' + r.category + '"]');
        if (!group) return;
        if (addRecords(group.querySelector("ol"), [r], false, false, true)) {
          group.querySelector(".empty").hidden = true;
          group.querySelector(".count-pill").textContent = group.querySelectorAll("[data-seq]").length;
        }
      });
      document.getElementById("info-count").textContent = timeline.querySelectorAll("[data-seq]").length;
      if (data.disclosures) applyDisclosures(data.disclosures);
      if (data.debt) applyDebt(data.debt);
      if (data.call) applyCall(data.call);
      if (data.recording) applyRecording(data.recording);
      if (data.after_call) applyAfterCall(data.after_call);
      if (data.records_more) showBehind("Many updates arrived while this page was not looking.");
    });
    if (follow) transcript.scrollTop = transcript.scrollHeight;  // after: the page's own scroll is kept
  }

  function applyCall(c) {
    if (state.dataset.status === "completed") return;
    state.dataset.status = "completed";
    var badge = document.getElementById("status-badge");
    badge.textContent = "Ended";
    badge.className = "badge";
    var running = badge.parentNode.querySelector(".elapsed");
    if (running) running.remove();
    var outcome = document.getElementById("call-outcome");
    outcome.textContent = c.outcome_label;
    outcome.className = "badge out-" + c.outcome;
    document.getElementById("call-reason").textContent = c.reason;
    setTime(document.getElementById("call-ended-at"), c.ended_at);
    document.getElementById("call-duration").textContent = c.duration_display;
    document.getElementById("call-count").textContent = c.information_count;
    document.getElementById("call-log").hidden = false;
    document.getElementById("call-pending").hidden = true;
  }

  /* The recording box: status, location, times, the problem if any, and the player once the
   * file can be played (its address is the page's own, never taken from the data). */
  // The after-the-call box comes rendered by the server's template (every value escaped there);
  // it is parsed as an inert document and swapped in only when something in it changed.
  function applyAfterCall(box) {
    var current = document.getElementById("after-call");
    if (!current || current.getAttribute("data-key") === box.key) return;
    var parsed = new DOMParser().parseFromString(box.html, "text/html").getElementById("after-call");
    if (parsed) current.replaceWith(document.importNode(parsed, true));
  }

  function applyRecording(r) {
    var box = document.getElementById("recording-box");
    if (!box) return;
    document.getElementById("recording-none").hidden = true;
    box.hidden = false;
    var status = document.getElementById("recording-status");
    status.textContent = r.status_label;
    status.className = "badge recstate-" + r.status;
    document.getElementById("recording-location").textContent = r.location || "—";
    document.getElementById("recording-egress").textContent = r.egress_id || "—";
    if (r.started_at) setTime(document.getElementById("recording-started"), r.started_at);
    if (r.ended_at) setTime(document.getElementById("recording-ended"), r.ended_at);
    document.getElementById("recording-problem-label").textContent =
      r.status === "failed" ? "Why it is not recorded:" : "Note:";
    document.getElementById("recording-error").textContent = r.error || "";
    document.getElementById("recording-problem").hidden = !r.error;
    var player = document.getElementById("recording-player");
    if (r.playable && !player.getAttribute("src")) player.src = player.dataset.src;
    player.hidden = !r.playable;
  }

  function applyDebt(debt) {
    if (!debt.items.length) return;
    document.getElementById("debt-total").textContent = debt.total_display;
    document.getElementById("debt-unsecured").textContent = debt.unsecured_display;
    var tbody = document.getElementById("debt-items");
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    debt.items.forEach(function (d) {
      var row = fromTemplate("tpl-debt-row");
      row.cells[0].textContent = d.type_display;
      row.cells[1].textContent = d.creditor_display;
      row.cells[2].textContent = d.amount_display;
      tbody.appendChild(row);
    });
    document.getElementById("debt-box").hidden = false;
    document.getElementById("debt-empty").hidden = true;
  }

  function applyDisclosures(list) {
    list.forEach(function (d) {
      var li = document.querySelector('#disclosures li[data-key="' + d.key + '"]');
      if (!li || !d.given) return;
      li.className = "given";
      li.querySelector(".mark").textContent = "✓";
      li.querySelector(".state").textContent = "given";
    });
  }

  // ---- polling -----------------------------------------------------------------------------
  function liveUrl() {
    var url = new URL(state.dataset.query, location.href);
    url.searchParams.set("after_seq", String(lastSeq));
    return url.toString();
  }

  function schedule(ms) {
    clearTimeout(timer);
    if (!stopped) timer = setTimeout(poll, ms);
  }

  function nextDelay() {
    if (failures) return Math.min(MAX_BACKOFF_MS, 1000 * Math.pow(2, failures - 1));
    return document.visibilityState === "hidden" ? HIDDEN_MS : VISIBLE_MS;
  }

  function poll() {
    var controller = new AbortController();
    var abort = setTimeout(function () { controller.abort(); }, REQUEST_TIMEOUT_MS);
    fetch(liveUrl(), {
      credentials: "same-origin", cache: "no-store", signal: controller.signal,
      headers: { "Accept": "application/json" }
    }).then(function (response) {
      if (response.status === 401) { signedOut(); return null; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (data) {
      if (!data) return;
      if (body.dataset.page === "overview") applyOverview(data); else applySession(data);
      lastSeq = Math.max(lastSeq, data.last_seq);
      failures = 0;
      lastOk = Date.now();
      hideOffline();
    }).catch(function () {
      failures++;
      showOffline(nextDelay());
    }).then(function () {
      clearTimeout(abort);
      setStatus();
      schedule(nextDelay());
    });
  }

  function start() {
    rememberTimeZone();
    localiseAll(document);
    tickElapsed();
    setInterval(function () { tickElapsed(); setStatus(); }, 1000);
    if (!state || !state.dataset.query) return;
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible" && !stopped) schedule(0);
      setStatus();
    });
    setStatus();
    schedule(VISIBLE_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
