// kubenenc dashboard: live updates. The server sends "changed" over server-sent events when
// counts or workers change; this fetches the same page as a fragment and swaps every
// element marked data-live. No framework, nothing loaded from elsewhere.
(function () {
  "use strict";
  var LIVE_PAGES = { overview: 1, invocations: 1, invocation: 1, workers: 1 };
  var page = document.body.getAttribute("data-page");
  var dot = document.getElementById("live");
  if (!LIVE_PAGES[page] || !window.EventSource) { if (dot) dot.className = "live off"; return; }
  var busy = false, again = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(window.location.href, { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        doc.querySelectorAll("[data-live]").forEach(function (fresh) {
          var old = document.getElementById(fresh.id);
          if (old) old.replaceWith(document.importNode(fresh, true));
        });
        document.body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next change tries again */ })
      .finally(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  var source = new EventSource("/events");
  source.addEventListener("open", function () { if (dot) dot.className = "live on"; });
  source.addEventListener("error", function () { if (dot) dot.className = "live off"; });
  source.addEventListener("changed", refresh);
})();
