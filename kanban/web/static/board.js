// The web board's only script: live updates over Server-Sent Events, no framework.
// On any board event the page fetches itself again and swaps each [data-live] region,
// leaving alone a region where someone is typing. A running log is tailed by offset.
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

  function refresh() {
    pending = null;
    fetch(location.href, { headers: { "Accept": "text/html" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        doc.querySelectorAll("[data-live]").forEach(function (fresh) {
          var old = document.getElementById(fresh.id);
          if (old && !busy(old) && old.innerHTML !== fresh.innerHTML) old.innerHTML = fresh.innerHTML;
        });
        document.dispatchEvent(new CustomEvent("kanban:refreshed"));
      })
      .catch(function () {});
  }

  function soon() { if (!pending) pending = setTimeout(refresh, 30); }

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
