// The web board's only script: live updates over Server-Sent Events, no framework.
// On any board event the page fetches itself again and swaps what changed in each
// [data-live] region, leaving alone a region where someone is typing. A running log is tailed by offset.
(function () {
  "use strict";
  var dot = document.getElementById("live");
  var pending = null;

  function busy(region) {
    var active = document.activeElement;
    if (active && region.contains(active) && /INPUT|TEXTAREA|SELECT/.test(active.tagName)) return true;
    var fields = region.querySelectorAll("textarea, input[type=text], input:not([type])");
    for (var i = 0; i < fields.length; i++) if (fields[i].value) return true;
    return false;
  }

  // Swap what changed: column by column in the board (a card moving touches two columns
  // of the eight), the other live regions whole.
  function swap(old, fresh) {
    if (busy(old) || old.innerHTML === fresh.innerHTML) return;
    var olds = old.querySelectorAll(".column[data-status]");
    var news = fresh.querySelectorAll(".column[data-status]");
    var same = olds.length && olds.length === news.length;
    for (var i = 0; same && i < olds.length; i++) same = olds[i].dataset.status === news[i].dataset.status;
    if (!same) { old.innerHTML = fresh.innerHTML; return; }
    for (var j = 0; j < olds.length; j++) {
      if (olds[j].outerHTML === news[j].outerHTML) continue;
      var open = olds[j].querySelector("details[open]");
      olds[j].replaceWith(news[j]);
      if (open) { var d = news[j].querySelector("details"); if (d) d.open = true; }
    }
  }

  var inflight = false, again = false;
  function refresh() {
    pending = null;
    if (inflight) { again = true; return; }  // one fetch at a time; one more after it
    inflight = true;
    fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        doc.querySelectorAll("[data-live]").forEach(function (fresh) {
          var old = document.getElementById(fresh.id);
          if (old) swap(old, fresh);
        });
        document.dispatchEvent(new CustomEvent("kanban:refreshed"));
      })
      .catch(function () {})
      .then(function () {
        inflight = false;
        if (again) { again = false; refresh(); }
      });
  }

  // Events of one change come together: gather them for 10 ms, then fetch once.
  function soon() { if (!pending) pending = setTimeout(refresh, 10); }

  if (window.EventSource) {
    var source = new EventSource("/api/events");
    source.onopen = function () { if (dot) dot.classList.add("on"); };
    source.onerror = function () { if (dot) dot.classList.remove("on"); };
    source.onmessage = soon;
  }

  var log = document.getElementById("log");
  function tail() {
    if (!log || log.dataset.live !== "true") return;
    fetch("/api/runs/" + log.dataset.run + "/log?offset=" + log.dataset.offset, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) return;
        if (data.text) {
          if (log.dataset.offset === "0") log.textContent = "";
          log.textContent += data.text;
          log.scrollTop = log.scrollHeight;
        }
        log.dataset.offset = String(data.offset);
        log.dataset.live = data.live ? "true" : "false";
        setTimeout(tail, data.text ? 100 : 500);
      })
      .catch(function () { setTimeout(tail, 2000); });
  }
  tail();
})();
