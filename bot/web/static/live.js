// Live updates for the queue page: re-fetch the page's fragment every few seconds and swap it in when it
// changed (ETag), and count deadlines down every second. Without JavaScript the page is complete as served.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch) return;
  var src = live.getAttribute("data-src");
  var every = Number(live.getAttribute("data-poll")) || 2000;
  var etag = null;
  var shown = document.querySelector("footer time");

  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + (seconds % 60) + " s";
    return Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  function countdown() {
    var clocks = live.querySelectorAll("[data-deadline]");
    for (var i = 0; i < clocks.length; i++) {
      var left = (Date.parse(clocks[i].getAttribute("data-deadline")) - Date.now()) / 1000;
      clocks[i].textContent = left > 0 ? duration(left) + " left" : "deadline passed";
    }
  }

  function tick() {
    var headers = { "X-Requested-With": "live" };
    if (etag) headers["If-None-Match"] = etag;
    fetch(src, { headers: headers, cache: "no-store", credentials: "same-origin" })
      .then(function (response) {
        document.body.classList.remove("stale");
        if (response.status === 200) {
          etag = response.headers.get("ETag");
          return response.text().then(function (html) {
            live.innerHTML = html;
            live.setAttribute("data-updated", String(Date.now()));
            countdown();
          });
        }
        if (response.status !== 304) document.body.classList.add("stale");
      })
      .catch(function () { document.body.classList.add("stale"); })
      .then(function () {
        if (shown) {
          var now = new Date();
          shown.setAttribute("datetime", now.toISOString());
          shown.textContent = now.toLocaleTimeString();
        }
        window.setTimeout(tick, every);
      });
  }

  window.setInterval(countdown, 1000);
  window.setTimeout(tick, every);
})();
