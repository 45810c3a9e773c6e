// bedrock-meter dashboard auto-refresh (served at /assets/refresh.js; the
// pages work without it). Every data-refresh seconds (default 30), while the
// tab is visible, fetch this same URL from this same server and swap in the
// new <main> and "data as of"; "refreshed at" is this browser's clock.
"use strict";
(function () {
  var secs = parseInt(document.body.getAttribute("data-refresh") || "30", 10);
  if (!(secs > 0)) { return; }
  var timer = null;
  function stamp() {
    var el = document.getElementById("refreshed");
    if (el) { el.textContent = "refreshed at " + new Date().toISOString().replace(/\.\d+Z$/, "Z"); }
  }
  function refresh() {
    fetch(window.location.href, { cache: "no-store", credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok && r.status !== 503) { throw new Error("HTTP " + r.status); } return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var main = doc.getElementById("content");
        var asOf = doc.getElementById("data-as-of");
        if (main) { document.getElementById("content").replaceWith(document.adoptNode(main)); }
        var cur = document.getElementById("data-as-of");
        if (asOf && cur) { cur.textContent = asOf.textContent; }
        stamp();
      })
      .catch(function () {
        var el = document.getElementById("refreshed");
        if (el) { el.textContent = "refresh failed at " + new Date().toISOString().replace(/\.\d+Z$/, "Z") + "; retrying"; }
      });
  }
  function start() { if (timer === null) { timer = window.setInterval(refresh, secs * 1000); } }
  function stop() { if (timer !== null) { window.clearInterval(timer); timer = null; } }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stop(); } else { refresh(); start(); }
  });
  if (!document.hidden) { start(); }
})();
