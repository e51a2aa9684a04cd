/* Timeveil pages: age presets and slider, live job progress, before/after comparison, face box, upload on choice,
   copying the erasure receipt. No libraries. */
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
      slider.setAttribute("aria-valuetext", "age " + value);
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

    // The bar follows the job's real place: sent 5%, then the queue from where it was first seen (10 to 80%),
    // running 90%, done 100%. `first` is how many requests were ahead when polling began.
    function poll(jobId, first) {
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
            if (job.status === "running") {
              say("Aging your photo…", 90);
            } else {
              var ahead = job.queue_ahead || 0;
              if (first === null || ahead > first) { first = ahead; }
              say(ahead === 0 ? "Next in line: waiting for a free worker…"
                : "Waiting for a free worker: " + ahead + (ahead === 1 ? " request" : " requests") + " ahead of yours…",
                Math.round(10 + 70 * (first - ahead) / (first + 1)));
            }
            window.setTimeout(function () { poll(jobId, first); }, 1000);
          }
        })
        .catch(function () { say("Lost contact with the server; retrying…", null); window.setTimeout(function () { poll(jobId, first); }, 3000); });
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
          // The API's own words name endpoints: the page says what happened and where to change it.
          fail(err.code === "no_face" ? "No face found in this photo: aging needs a clearly visible face."
            : err.code === "consent_required" ? "Aging is off: Timeveil no longer has your permission to store "
              + "and transform photos. Allow it again on the Consent page."
            : (err.message || "The request was refused."));
          return;
        }
        poll(res.body.id, null);
      }).catch(function () { fail("Could not reach the server."); });
    });

    if (form.dataset.pending) {  // a job queued without the script, or before a reload: follow it
      submit.disabled = true;
      say("Waiting for a free worker…", 5);
      poll(form.dataset.pending, null);
    }
  }

  function setupCompare(slider) {
    var after = document.getElementById("after");
    var divider = document.getElementById("divider");
    var age = document.getElementById("compare").dataset.age;
    function apply() {
      after.style.clipPath = "inset(0 0 0 " + slider.value + "%)";
      divider.style.left = slider.value + "%";
      // What the split shows, for screen readers: the left part is the original, the right part the result.
      slider.setAttribute("aria-valuetext", slider.value + "% before, " + (100 - slider.value) + "% after (age " + age + ")");
    }
    slider.addEventListener("input", apply);
    apply();
  }

  // Arriving on a finished result (after aging, or from "Compare"): say so, and put focus on the comparison.
  function announceResult(compare) {
    var asked = new URLSearchParams(window.location.search).get("job");
    if (!asked || asked !== compare.dataset.job) { return; }
    var heading = document.getElementById("compare-h");
    if (heading) { heading.focus(); }
    var status = document.getElementById("progress-text");
    if (status) {
      // Changed after load, so assistive technology hears the live region change.
      window.setTimeout(function () {
        status.textContent = "Done: your photo aged to " + compare.dataset.age +
          " is ready. Compare before and after with the slider, or download it.";
      }, 100);
    }
  }

  // Upload as soon as a photo is chosen or taken; the Upload button stays for browsers without script.
  function setupUpload(form) {
    var status = document.getElementById("upload-status");
    var sending = false;
    function send() {
      sending = true;
      if (status) { status.textContent = "Uploading your photo…"; }
    }
    form.addEventListener("submit", function (event) {
      if (sending) { event.preventDefault(); return; }  // one upload per choice, however often it is clicked
      send();
    });
    form.querySelectorAll("input[type=file]").forEach(function (input) {
      input.addEventListener("change", function () {
        if (sending || !input.files || !input.files.length) { return; }
        form.querySelectorAll("input[type=file]").forEach(function (other) {
          if (other !== input) { other.value = ""; }  // only the photo just chosen travels
        });
        send();
        form.submit();
      });
    });
  }

  // The erasure receipt's copy button: shown only where the clipboard can be written.
  function setupCopy(button) {
    if (!navigator.clipboard || !window.isSecureContext) { return; }
    var source = document.getElementById(button.dataset.copy);
    var status = document.getElementById("receipt-copied");
    button.classList.remove("hidden");
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent.trim()).then(function () {
        status.textContent = "Copied. Paste it somewhere safe: we cannot show it again.";
      }, function () {
        status.textContent = "Could not copy: select the receipt and copy it, or download it.";
      });
    });
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
    if (compare) { setupCompare(compare); announceResult(document.getElementById("compare")); }
    var upload = document.getElementById("upload-form");
    if (upload) { setupUpload(upload); }
    var copy = document.getElementById("receipt-copy");
    if (copy) { setupCopy(copy); }
    var frame = document.getElementById("frame");
    if (frame && frame.dataset.box) { setupFaceBox(frame); }
  });
}());
