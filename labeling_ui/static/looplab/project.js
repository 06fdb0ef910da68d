// The project page: lead actions through the API, and live progress of rounds and training runs.
import { api } from "./api.js";
import { expose } from "./test_hooks.js";

const config = JSON.parse(document.getElementById("page-config").textContent);
const projectId = config.project;
const statusBox = document.getElementById("action-status");
const ACTIVE = new Set(["queued", "running"]);
const POLL_MS = 1000;

const state = { polling: false, timer: null, refreshing: false, lastError: null };
expose("state", state);

function say(message, kind = "info") {
  statusBox.hidden = false;
  statusBox.textContent = message;
  statusBox.className = "alert" + (kind === "error" ? " alert-error" : kind === "ok" ? " alert-ok" : "");
}

// Re-render the server-side sections (counts, budget, runs, models, rounds) without a page reload.
async function refreshSections() {
  if (state.refreshing) return;
  state.refreshing = true;
  try {
    const response = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const fresh of doc.querySelectorAll("[data-refresh][id]")) {
      const old = document.getElementById(fresh.id);
      if (old) old.replaceWith(document.importNode(fresh, true));
    }
    const freshConfig = doc.getElementById("page-config");
    if (freshConfig && JSON.parse(freshConfig.textContent).active) startPolling();
  } finally {
    state.refreshing = false;
  }
}

function updateRow(row, job) {
  const status = job.status;
  row.dataset.status = status;
  const bar = row.querySelector(".progress");
  const pct = Math.round(job.progress || 0);
  if (bar) {
    bar.setAttribute("aria-valuenow", String(pct));
    bar.classList.toggle("is-running", status === "running");
    bar.classList.toggle("is-done", status === "succeeded");
    bar.classList.toggle("is-failed", status === "failed");
    bar.querySelector(".progress-fill").style.width = pct + "%";
  }
  const set = (selector, text) => { const el = row.querySelector(selector); if (el) el.textContent = text; };
  set(".job-pct", pct + "%");
  set(".job-msg", status === "failed" && job.error ? job.error.slice(0, 200) : job.message || "");
  const cancel = row.querySelector(".job-cancel");
  if (cancel && !cancel.disabled) cancel.hidden = !ACTIVE.has(status) || Boolean(job.cancel_requested);
  const badge = row.querySelector(".job-status");
  if (badge) { badge.textContent = status; badge.className = `badge badge-${status} job-status`; }
  if (job.stage !== undefined) set(".job-stage", job.stage);
  if (job.selected !== undefined) set(".job-selected", String(job.selected));
}

async function poll() {
  state.timer = null;
  let needRefresh = false;
  let anyActive = false;
  try {
    const [runs, rounds] = await Promise.all([
      api(`/api/v1/projects/${projectId}/training-runs/`),
      api(`/api/v1/projects/${projectId}/rounds/`),
    ]);
    for (const [kind, list] of [["run", runs.data], ["round", rounds.data]]) {
      for (const job of list) {
        const row = document.querySelector(`tr[data-job="${kind}"][data-id="${job.id}"]`);
        if (ACTIVE.has(job.status)) anyActive = true;
        if (!row) { needRefresh = true; continue; }
        const wasActive = ACTIVE.has(row.dataset.status);
        updateRow(row, job);
        if (wasActive && !ACTIVE.has(job.status)) needRefresh = true;  // finished: new model, counts, ...
      }
    }
    state.lastError = null;
  } catch (err) {
    state.lastError = err.message;
    anyActive = true;  // keep trying: a blip must not freeze the page
  }
  if (needRefresh) await refreshSections();
  if (anyActive) state.timer = setTimeout(poll, POLL_MS);
  else state.polling = false;
}

function startPolling() {
  if (state.polling) return;
  state.polling = true;
  state.timer = setTimeout(poll, POLL_MS);
}

async function submitJson(form, url, body, describe) {
  const button = form ? form.querySelector("button[type=submit]") : null;
  if (button) button.disabled = true;
  try {
    const { data } = await api(url, { method: "POST", body });
    say(describe(data), "ok");
    await refreshSections();
    startPolling();
  } catch (err) {
    say(err.message, "error");
  } finally {
    if (button) button.disabled = false;
  }
}

const roundForm = document.getElementById("round-form");
if (roundForm) {
  roundForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const fields = new FormData(roundForm);
    const body = { budget: Number(fields.get("budget")), strategy: fields.get("strategy") };
    const key = String(fields.get("slice_key") || "").trim();
    if (key) {
      const value = String(fields.get("slice_value") || "").trim();
      // metadata values may be strings or numbers: "3" matches either
      const where = { [key]: value !== "" && Number.isFinite(Number(value)) ? [value, Number(value)] : value };
      const slice = { name: `${key}=${value}`.slice(0, 60), where };
      if (fields.get("slice_min") !== "") slice.min = Number(fields.get("slice_min"));
      if (fields.get("slice_max") !== "") slice.max = Number(fields.get("slice_max"));
      body.slices = [slice];
    }
    const label = fields.get("class_label");
    if (label && fields.get("class_min") !== "") body.classes = [{ label, min: Number(fields.get("class_min")) }];
    if (fields.get("skip_duplicates")) body.exclude_near_duplicates = 0.98;
    submitJson(roundForm, roundForm.dataset.api, body,
      (r) => `Round #${r.number} started: selecting up to ${r.budget} samples (${r.strategy}).`);
  });
}

const trainForm = document.getElementById("train-form");
if (trainForm) {
  trainForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const epochs = new FormData(trainForm).get("epochs");
    const body = epochs ? { epochs: Number(epochs) } : {};
    submitJson(trainForm, trainForm.dataset.api, body,
      (run) => `Training run #${run.number} queued on dataset v${run.dataset_version.number}.`);
  });
}

// Deploy buttons live in a section that gets re-rendered, so listen on the document.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-deploy]");
  if (!button) return;
  button.disabled = true;
  api(button.dataset.api, { method: "POST", body: { model: Number(button.dataset.deploy) } })
    .then(({ data }) => { say(`Model v${data.model_version} is now serving.`, "ok"); return refreshSections(); })
    .catch((err) => { say(err.message, "error"); button.disabled = false; });
});

if (config.active) startPolling();
