// The job page: poll the job's progress every second; reload once it finishes so results
// render server-side. A file rather than an inline script, so the CSP needs no 'unsafe-inline'.
(function () {
  var box = document.getElementById("job-progress");
  if (!box || box.dataset.finished === "1") return;
  var bar = document.getElementById("job-progress-bar");
  var text = document.getElementById("job-progress-text");
  function tick() {
    fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        bar.value = d.percent;
        text.textContent = d.status + " · " + d.done + " / " + d.total + " (" + d.percent + "%)";
        if (d.finished) { window.location.reload(); } else { setTimeout(tick, 1000); }
      })
      .catch(function () { setTimeout(tick, 1000); });
  }
  setTimeout(tick, 1000);
})();
