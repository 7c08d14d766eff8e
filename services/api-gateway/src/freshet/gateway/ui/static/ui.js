// Freshet web UI: small enhancements over pages that work without script.
// - reports the browser's time zone (cookie), so the server renders times in it;
// - live run and refresh updates over server-sent events (see freshet/gateway/ui/live.py);
// - Preview dataset without leaving the page, polling the request until it is answered;
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

  // `pageErrors`: answers that are a part of a page even when not 2xx (a refused preview).
  function fetchHtml(url, options, pageErrors) {
    options = options || {};
    options.headers = Object.assign({ "X-Requested-With": "fetch" }, options.headers || {});
    options.credentials = "same-origin";
    return fetch(url, options).then(function (r) {
      if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
      var html = (r.headers.get("content-type") || "").indexOf("text/html") === 0;
      if (!r.ok && !(pageErrors && html)) {
        return r.text().then(function (text) { throw new Error(text || "HTTP " + r.status); });
      }
      return r.text();
    });
  }

  // The first element of an HTML fragment (a <template> parses rows and sections alike).
  function parseOne(html) {
    var holder = document.createElement("template");
    holder.innerHTML = html.trim();
    return holder.content.firstElementChild;
  }

  function replaceWith(el, html) {
    var fresh = parseOne(html);
    if (!fresh) return null;
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
    return fresh;
  }

  function refresh(el) {
    if (el.hasAttribute("data-live-reload")) { window.location.reload(); return; }
    var src = el.getAttribute("data-live-src");
    if (!src) return;
    fetchHtml(src).then(function (html) { replaceWith(el, html); }).catch(function () {});
  }

  function insertNew(change) {
    document.querySelectorAll("[data-live-empty]").forEach(function (el) {
      if (!matchesScope(el.getAttribute("data-live-empty"), change)) return;
      var wanted = el.getAttribute("data-live-filter-status");
      if (wanted && wanted !== change.status) return;
      window.location.reload();
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
        var row = parseOne(html);
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

  // Refresh jobs: update the cards shown (a job that ended moves from "Running" to the top of
  // "Finished"), add new ones to "Running", and once one ends show the cached tables' new ages
  // and sizes.
  function showEmptyNote(list) {
    var note = list.parentNode.querySelector("[data-live-empty-note]");
    if (note) note.hidden = list.children.length > 0;
  }

  function updateJob(card, change) {
    fetchHtml(card.getAttribute("data-live-src")).then(function (html) {
      var fresh = replaceWith(card, html);
      if (!fresh || change.status === "in_progress") return;
      var running = fresh.closest("[data-live-insert-refresh]");
      var finished = document.querySelector("[data-live-finished]");
      if (!running || !finished) return;
      var focused = fresh.contains(document.activeElement);
      finished.insertBefore(fresh, finished.firstElementChild);
      showEmptyNote(running);
      showEmptyNote(finished);
      if (focused) { var link = fresh.querySelector("a"); if (link) link.focus(); }
    }).catch(function () {});
  }

  function applyRefresh(change) {
    document.querySelectorAll('[data-live="refresh:' + change.refresh_id + '"]').forEach(function (card) {
      updateJob(card, change);
    });
    document.querySelectorAll("[data-live-insert-refresh]").forEach(function (list) {
      var scope = list.getAttribute("data-live-insert-refresh");
      if (scope !== "all" && scope !== "endpoint:" + change.endpoint_id) return;
      if (change.status !== "in_progress") return;
      if (document.querySelector('[data-live="refresh:' + change.refresh_id + '"]')) return;
      fetchHtml("/ui/refreshes/" + change.refresh_id + "/card").then(function (html) {
        if (document.querySelector('[data-live="refresh:' + change.refresh_id + '"]')) return;
        var card = parseOne(html);
        if (!card) return;
        list.insertBefore(card, list.firstElementChild);
        card.classList.add("updated");
        showEmptyNote(list);
      }).catch(function () {});
    });
    if (change.status === "in_progress") return;
    document.querySelectorAll("[data-live-refetch]").forEach(function (el) {
      fetchHtml(el.getAttribute("data-live-refetch")).then(function (html) { el.innerHTML = html; })
        .catch(function () {});
    });
  }

  function listen() {
    var url = document.body.getAttribute("data-live-stream");
    if (!url || !window.EventSource) return;
    // Changes announced after the server began reading this page: none is missed between
    // the page and its stream (see freshet/gateway/ui/live.py).
    var since = document.body.getAttribute("data-live-since");
    if (since) url += "?since=" + encodeURIComponent(since);
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
    source.addEventListener("refresh", function (event) {
      try { applyRefresh(JSON.parse(event.data)); } catch (e) { /* a malformed change is skipped */ }
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

  // Preview dataset: post in the background and swap the panel in; while the request is still
  // sampling (the panel has data-poll) look at it again, backing off, until it is answered.
  var POLL_FIRST_MS = 500, POLL_MAX_MS = 3000, POLL_GIVE_UP_MS = 5 * 60 * 1000;

  function swapPanel(panel, html, started) {
    var fresh = replaceWith(panel, html);
    if (!fresh) return;
    fresh.classList.remove("updated");
    var news = fresh.querySelector(".problem-note, .provenance, .sampling");
    if (news && panel.hasAttribute("data-focus-news")) { news.setAttribute("tabindex", "-1"); news.focus(); }
    poll(fresh, started || Date.now(), POLL_FIRST_MS);
  }

  function poll(panel, started, delay) {
    var src = panel.getAttribute("data-poll");
    if (!src) return;
    if (Date.now() - started > POLL_GIVE_UP_MS) return;  // its "Check again" link stays
    window.setTimeout(function () {
      if (!document.body.contains(panel)) return;
      fetchHtml(src).then(function (html) {
        var fresh = parseOne(html);
        if (fresh && fresh.hasAttribute("data-poll")) {
          poll(panel, started, Math.min(delay * 2, POLL_MAX_MS));  // still sampling: keep it
          return;
        }
        panel.setAttribute("data-focus-news", "");
        swapPanel(panel, html, started);
      }).catch(function () { poll(panel, started, POLL_MAX_MS); });
    }, delay);
  }

  function previews() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!form.matches || !form.matches("form[data-preview-form]") || event.defaultPrevented) return;
      event.preventDefault();
      var panel = form.closest("section");
      var button = form.querySelector("button");
      button.disabled = true;
      button.textContent = "Sampling…";
      fetchHtml(form.getAttribute("action"), {
        method: "POST", body: new FormData(form), headers: { "X-CSRF-Token": csrf },
      }, true).then(function (html) {
        panel.setAttribute("data-focus-news", "");
        swapPanel(panel, html);
      }).catch(function (e) {
        button.disabled = false;
        button.textContent = "Preview dataset";
        var out = document.createElement("p");
        out.className = "error small";
        out.setAttribute("role", "alert");
        out.textContent = "The preview could not be asked for: " + e.message;
        form.parentNode.appendChild(out);
      });
    });
    document.querySelectorAll("[data-poll]").forEach(function (panel) { poll(panel, Date.now(), POLL_FIRST_MS); });
  }

  reportTimeZone();
  kindSwitch();
  connectionTests();
  confirmations();
  previews();
  listen();
})();
