// Freshet web UI: small enhancements over pages that work without script.
// - reports the browser's time zone (cookie), so the server renders times in it;
// - live run updates over server-sent events (see freshet/gateway/ui/live.py);
// - connection tests without leaving the form (secrets typed stay in their fields);
// - the endpoint form shows only the settings of the chosen kind; confirmations.
"use strict";

(function () {
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function reportTimeZone() {
    var zone = "";
    try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
    if (!zone) return;
    document.querySelectorAll("input[data-timezone]").forEach(function (el) { el.value = zone; });
    var current = document.cookie.split("; ").find(function (c) { return c.indexOf("freshet_tz=") === 0; });
    var wanted = "freshet_tz=" + encodeURIComponent(zone);
    if (current !== wanted) {
      document.cookie = wanted + "; path=/ui; SameSite=Lax; max-age=31536000";
    }
  }

  function fetchHtml(url, options) {
    options = options || {};
    options.headers = Object.assign({ "X-Requested-With": "fetch" }, options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options).then(function (r) {
      if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.text();
    });
  }

  function replaceWith(el, html) {
    var holder = document.createElement("tbody");
    holder.innerHTML = html.trim();
    var fresh = holder.firstElementChild;
    if (!fresh) return;
    if (fresh.tagName !== el.tagName) {  // a row fragment never needs more than a row
      var table = document.createElement("table");
      table.innerHTML = html.trim();
      fresh = table.querySelector(el.tagName.toLowerCase()) || fresh;
    }
    var focused = el.contains(document.activeElement);
    if (el.classList.contains("highlight")) {  // the run a trigger just made stays marked
      fresh.classList.add("highlight");
      fresh.setAttribute("aria-current", "true");
    }
    el.replaceWith(fresh);
    fresh.classList.add("updated");
    if (focused) {
      var target = fresh.querySelector("a, button");
      if (target) target.focus();
    }
  }

  function refresh(el) {
    if (el.hasAttribute("data-live-reload")) { window.location.reload(); return; }
    var src = el.getAttribute("data-live-src");
    if (!src) return;
    fetchHtml(src).then(function (html) { replaceWith(el, html); }).catch(function () {});
  }

  function insertNew(change) {
    document.querySelectorAll("[data-live-empty]").forEach(function (el) {
      if (matchesScope(el.getAttribute("data-live-empty"), change)) window.location.reload();
    });
    document.querySelectorAll("tbody[data-live-insert]").forEach(function (body) {
      if (!matchesScope(body.getAttribute("data-live-insert"), change)) return;
      if (body.hasAttribute("data-live-closed")) return;
      var wanted = body.getAttribute("data-live-filter-status");
      if (wanted && wanted !== change.status) return;
      if (body.querySelector('[data-live="run:' + change.run_id + '"]')) return;
      var src = "/ui/runs/" + change.run_id + "/row" + (body.hasAttribute("data-live-wide") ? "?wide=true" : "");
      fetchHtml(src).then(function (html) {
        if (body.querySelector('[data-live="run:' + change.run_id + '"]')) return;
        var holder = document.createElement("tbody");
        holder.innerHTML = html.trim();
        var row = holder.firstElementChild;
        if (!row) return;
        body.insertBefore(row, body.firstElementChild);
        row.classList.add("updated");
      }).catch(function () {});
    });
  }

  function matchesScope(scope, change) {
    return scope === "all" ||
      scope === "collection:" + change.collection_id ||
      scope === "endpoint-runs:" + change.endpoint_id;
  }

  function applyChange(change) {
    var keys = ["run:" + change.run_id, "endpoint:" + change.endpoint_id];
    keys.forEach(function (key) {
      document.querySelectorAll('[data-live="' + key + '"]').forEach(refresh);
    });
    insertNew(change);
  }

  function listen() {
    var url = document.body.getAttribute("data-live-stream");
    if (!url || !window.EventSource) return;
    var source = new EventSource(url);
    var indicators = document.querySelectorAll("[data-live-indicator]");
    source.addEventListener("open", function () {
      indicators.forEach(function (el) { el.hidden = false; });
    });
    source.addEventListener("error", function () {
      indicators.forEach(function (el) { el.hidden = true; });
    });
    source.addEventListener("run", function (event) {
      try { applyChange(JSON.parse(event.data)); } catch (e) { /* a malformed change is skipped */ }
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function connectionTests() {
    // On the endpoint form: "Test connection" posts the form in the background.
    document.querySelectorAll("button[data-test-draft]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        event.preventDefault();
        var form = button.form;
        var data = new FormData(form);
        data.set("action", "test");
        var out = document.getElementById("test-result");
        button.disabled = true;
        out.textContent = "Testing…";
        fetchHtml(form.getAttribute("action") || window.location.href, {
          method: "POST", body: data, headers: { "X-CSRF-Token": csrf },
        }).then(function (html) { out.innerHTML = html; })
          .catch(function (e) { out.textContent = "The test could not run (" + e.message + ")."; })
          .finally(function () { button.disabled = false; });
      });
    });
    // On an endpoint's page: test the stored settings.
    document.querySelectorAll("form[data-test-connection]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var out = document.getElementById(form.getAttribute("data-result"));
        var button = form.querySelector("button");
        button.disabled = true;
        out.textContent = "Testing…";
        fetchHtml(form.getAttribute("action"), { method: "POST", body: new FormData(form), headers: { "X-CSRF-Token": csrf } })
          .then(function (html) { out.innerHTML = html; })
          .catch(function (e) { out.textContent = "The test could not run (" + e.message + ")."; })
          .finally(function () { button.disabled = false; });
      });
    });
  }

  function kindSwitch() {
    var select = document.querySelector("select[data-kind-select]");
    if (!select) return;
    function show() {
      document.querySelectorAll("fieldset[data-kind]").forEach(function (fs) {
        fs.hidden = fs.getAttribute("data-kind") !== select.value;
      });
    }
    select.addEventListener("change", show);
    show();
  }

  function confirmations() {
    document.addEventListener("submit", function (event) {
      var message = event.target.getAttribute && event.target.getAttribute("data-confirm");
      if (message && !window.confirm(message)) event.preventDefault();
    });
    document.querySelectorAll("a[data-back]").forEach(function (a) {
      if (window.history.length > 1) {
        a.addEventListener("click", function (event) { event.preventDefault(); window.history.back(); });
      }
    });
  }

  reportTimeZone();
  kindSwitch();
  connectionTests();
  confirmations();
  listen();
})();
