/* Timeveil pages: age presets and slider, live job progress, before/after comparison, face box. No libraries. */
(function () {
  "use strict";

  function csrfToken(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function setupAgeForm(form) {
    var slider = form.querySelector("#target_age");
    var output = form.querySelector("#age-value");
    var presets = form.querySelectorAll("#presets button");
    var status = form.querySelector("#progress-text");
    var box = form.querySelector("#progress-box");
    var bar = form.querySelector("#progress");
    var submit = form.querySelector("#age-submit");

    function show(value) {
      output.value = value;
      output.textContent = value;
      presets.forEach(function (b) { b.setAttribute("aria-pressed", String(b.dataset.age === String(value))); });
    }
    slider.addEventListener("input", function () { show(slider.value); });
    presets.forEach(function (b) {
      b.addEventListener("click", function () { slider.value = b.dataset.age; show(b.dataset.age); });
    });

    function say(text, percent) {
      status.textContent = text;
      if (percent !== null) { box.classList.remove("hidden"); bar.value = percent; bar.textContent = percent + "%"; }
    }

    function fail(text) {  // a final answer: no bar left half full
      box.classList.add("hidden");
      status.textContent = text;
      submit.disabled = false;
    }

    function poll(jobId, started) {
      fetch("/api/v1/transformations/" + jobId, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (job) {
          if (job.status === "done") {
            say("Done. Opening the comparison…", 100);
            window.location.assign(window.location.pathname + "?job=" + jobId);
          } else if (job.status === "failed") {
            fail(job.error === "no_face" ? "No face found in this photo: aging needs a clearly visible face."
              : "Aging failed (" + job.error + "). Please try again.");
          } else {
            // No server-side percentage exists: show time waited, capped below 100 until the job says done.
            var waited = (Date.now() - started) / 1000;
            say(job.status === "running" ? "Aging your photo…" : "Waiting for a free worker…",
              Math.min(95, Math.round(100 * (1 - Math.exp(-waited / 8)))));
            window.setTimeout(function () { poll(jobId, started); }, 1000);
          }
        })
        .catch(function () { say("Lost contact with the server; retrying…", null); window.setTimeout(function () { poll(jobId, started); }, 3000); });
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      submit.disabled = true;
      say("Sending your request…", 5);
      fetch("/api/v1/photos/" + form.dataset.photo + "/transformations", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken(form) },
        body: JSON.stringify({ target_age: Number(slider.value) })
      }).then(function (r) {
        return r.json().then(function (body) { return { ok: r.ok, status: r.status, body: body }; });
      }).then(function (res) {
        if (!res.ok) {
          var err = res.body.error || {};
          fail(err.code === "no_face" ? "No face found in this photo: aging needs a clearly visible face."
            : (err.message || "The request was refused."));
          return;
        }
        poll(res.body.id, Date.now());
      }).catch(function () { fail("Could not reach the server."); });
    });

    if (form.dataset.pending) {  // a job queued without the script, or before a reload: follow it
      submit.disabled = true;
      say("Waiting for a free worker…", 5);
      poll(form.dataset.pending, Date.now());
    }
  }

  function setupCompare(slider) {
    var after = document.getElementById("after");
    var divider = document.getElementById("divider");
    function apply() {
      after.style.clipPath = "inset(0 0 0 " + slider.value + "%)";
      divider.style.left = slider.value + "%";
    }
    slider.addEventListener("input", apply);
    apply();
  }

  function setupFaceBox(frame) {
    var box;
    try { box = JSON.parse(frame.dataset.box); } catch (e) { return; }
    var mark = document.createElement("div");
    mark.className = "facebox";
    mark.setAttribute("aria-hidden", "true");
    mark.style.left = box.left + "%"; mark.style.top = box.top + "%";
    mark.style.width = box.width + "%"; mark.style.height = box.height + "%";
    frame.appendChild(mark);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("age-form");
    if (form) { setupAgeForm(form); }
    var compare = document.getElementById("compare-slider");
    if (compare) { setupCompare(compare); }
    var frame = document.getElementById("frame");
    if (frame && frame.dataset.box) { setupFaceBox(frame); }
  });
}());
