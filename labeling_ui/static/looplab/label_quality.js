// The project page's Label quality section: start a label check (a job), follow it, act on its findings
// through the review API (reject → back to the annotators, or correct to the suggested label).
import { api } from "./api.js";
import { expose } from "./test_hooks.js";
import { el, jobProgress, samplePreview, showPageError } from "./job.js";

const section = document.getElementById("label-quality");
const KIND = { label_issue: "likely wrong label", outlier: "outlier", near_duplicate: "near-duplicate" };
const REVIEWED = { rejected: "sent back", corrected: "corrected" };  // done before this page was opened

if (section) {
  const projectId = section.dataset.project;
  const modality = section.dataset.modality;
  const rows = document.getElementById("finding-rows");
  const table = document.getElementById("finding-table");
  const jobBox = document.getElementById("label-check-job");
  const button = document.getElementById("label-check-btn");
  // What the page shows, for people and for tests: the latest check, its findings, what was done to them.
  const state = { check: null, findings: [], done: {}, polling: null, error: null };
  expose("labelCheck", state);



  function renderJob() {
    const c = state.check;
    jobBox.hidden = !c;
    if (!c) return;
    jobBox.replaceChildren(jobProgress(c, { label: "Label check progress", message: `Check #${c.id}: ${c.message}`,
      cancelUrl: `/api/v1/label-checks/${c.id}/cancel/` }));
  }

  function renderFindings() {
    table.hidden = state.findings.length === 0;
    rows.replaceChildren();
    for (const f of state.findings) {
      const tr = el("tr");
      tr.dataset.sample = f.sample;
      tr.dataset.kind = f.kind;
      const th = el("th");
      th.scope = "row";
      th.append(samplePreview(modality, f), el("div", "small muted", f.external_id || `#${f.sample}`));
      const label = el("td");
      label.append(el("strong", "", f.label));
      if (f.suggested_label) label.append(el("span", "muted", ` → ${f.suggested_label}`));
      const actions = el("td", "actions");
      const outcome = state.done[f.sample] || REVIEWED[f.review_status];
      if (outcome) {
        actions.append(el("span", "badge badge-succeeded", outcome));
      } else if (f.annotation) {
        const relabel = el("button", "btn btn-small", "Relabel");
        relabel.type = "button";
        relabel.dataset.action = "reject";
        relabel.title = "Reject this annotation; the task goes back to the annotators";
        actions.append(relabel);
        if (f.kind === "label_issue" && f.suggested_label) {
          const use = el("button", "btn btn-small", `Use ${f.suggested_label}`);
          use.type = "button";
          use.dataset.action = "correct";
          actions.append(use);
        }
      } else {
        actions.append(el("span", "muted small", "no annotation to review"));
      }
      tr.append(th, el("td", "", KIND[f.kind] || f.kind), label, el("td", "small", f.reason),
        el("td", "num", f.score.toFixed(2)), actions);
      rows.append(tr);
    }
  }

  function showError(message) {
    state.error = message;
    showPageError(message);
  }

  async function load() {
    try {
      const { data } = await api(`/api/v1/projects/${projectId}/label-checks/`);
      const latest = data[0] || null;
      if (latest && latest.status === "succeeded") {
        if (!state.check || state.check.id !== latest.id || state.check.status !== "succeeded") {
          state.findings = (await api(`/api/v1/label-checks/${latest.id}/`)).data.findings;
          state.done = {};
        }
      } else if (!latest || latest.status === "failed") {
        state.findings = [];
      }
      state.check = latest;
    } catch (err) {
      showError(err.message);
    }
    renderJob();
    renderFindings();
    const active = state.check && (state.check.status === "queued" || state.check.status === "running");
    button.disabled = Boolean(active);
    clearTimeout(state.polling);
    state.polling = active ? setTimeout(load, 1000) : null;
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api(`/api/v1/projects/${projectId}/label-checks/`, { method: "POST", body: {} });
    } catch (err) {
      showError(err.message);
    }
    await load();
  });

  rows.addEventListener("click", async (event) => {
    const target = event.target.closest("button[data-action]");
    if (!target) return;
    const sample = Number(target.closest("tr").dataset.sample);
    const f = state.findings.find((x) => x.sample === sample);
    const body = target.dataset.action === "reject"
      ? { action: "reject", comment: `Label check #${state.check.id}: ${f.reason}` }
      : { action: "correct", result: { label: f.suggested_label } };
    for (const b of target.closest("td").querySelectorAll("button")) b.disabled = true;
    try {
      await api(`/api/v1/annotations/${f.annotation}/review/`, { method: "POST", body });
      state.done[sample] = body.action === "reject" ? "sent back" : `corrected to ${f.suggested_label}`;
    } catch (err) {
      showError(err.message);
    }
    renderFindings();
  });

  load();
}
