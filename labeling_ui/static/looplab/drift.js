// The project page's Drift section: run a drift check (a job), read its verdict and slices, and send the
// production samples most unlike the training data back to labeling.
import { api } from "./api.js";
import { expose } from "./test_hooks.js";
import { el, jobProgress, samplePreview, showPageError } from "./job.js";

const section = document.getElementById("drift");

if (section) {
  const projectId = section.dataset.project;
  const modality = section.dataset.modality;
  const $ = (id) => document.getElementById(id);
  // What the page shows, for people and for tests.
  const state = { check: null, detail: null, polling: null, flagged: null, error: null, schedule: null };
  expose("drift", state);

  const num = (v, digits = 3) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));
  const pct = (v) => (v === null || v === undefined ? "—" : `${(100 * v).toFixed(0)}%`);

  function showError(message) {
    state.error = message;
    showPageError(message);
  }

  // Run `action` with the button `id` disabled; a failure is shown on the page.
  async function whileDisabled(id, action) {
    $(id).disabled = true;
    try {
      await action();
    } catch (err) {
      showError(err.message);
    } finally {
      $(id).disabled = false;
    }
  }

  function stat(label, value, cls) {
    const div = el("div");
    div.append(el("dt", "", label), el("dd", cls || "", value));
    return div;
  }


  function render() {
    const c = state.check;
    $("drift-job").hidden = !c;
    if (c) $("drift-job").replaceChildren(jobProgress(c, { label: "Drift check progress", message: `Check #${c.id}: ${c.message}`,
      cancelUrl: `/api/v1/drift-checks/${c.id}/cancel/` }));
    renderSchedule();
    const d = state.detail;
    $("drift-result").hidden = !d;
    if (!d) return;
    const r = d.report;
    $("drift-stats").replaceChildren(
      stat("Verdict", r.drifted ? "drift" : "no drift", r.drifted ? "is-bad" : "is-ok"),
      stat("Window", `${when(d.window_start)} → ${when(d.window_end)} (${d.trigger === "schedule" ? "scheduled" : "asked"})`),
      stat("p-value", num(r.p_value)),
      stat("Beyond the training data", r.novelty
        ? `${pct(r.novelty.share_prod)} of production (${pct(r.novelty.share_expected)} expected)` : "—",
        r.statistic === "novelty" && r.drifted ? "is-bad" : ""),
      stat("Confidence PSI", r.confidence_psi === null ? "—" : `${num(r.confidence_psi)} (${r.confidence_level})`),
      stat("Mean confidence", `${pct(r.mean_confidence_ref)} → ${pct(r.mean_confidence_prod)}`),
      stat("Samples", `${r.n_ref} training · ${r.n_prod} production`),
    );
    const alertText = { sending: `sending (attempt ${d.alert_attempts + 1})`, sent: `sent ${when(d.alert_sent_at)}`,
      failed: `failed: ${d.alert_error}` }[d.alert_status];
    if (alertText) {
      $("drift-stats").append(stat("Webhook alert", alertText, d.alert_status === "failed" ? "is-bad" : ""));
    }
    const slices = Object.entries(r.slices || {});
    const table = $("drift-slices");
    table.hidden = slices.length === 0;
    table.tBodies[0].replaceChildren(...slices.map(([name, s]) => {
      const tr = el("tr");
      tr.dataset.slice = name;
      const th = el("th", "", name);
      th.scope = "row";
      tr.append(th, el("td", "num", `${pct(s.share_ref)} → ${pct(s.share_prod)}`), el("td", "num", num(s.p_value)),
        el("td", "", s.drifted === null ? "too few samples" : s.drifted ? "drift" : "—"));
      return tr;
    }));
    const open = d.witnesses.filter((w) => !w.labeled && !w.drift_flagged);
    const button = $("drift-flag-btn");
    button.hidden = open.length === 0;
    button.textContent = `Send ${open.length} to labeling`;
    $("drift-witness-title").textContent = d.witnesses.length
      ? `Most unlike the training data (${d.witnesses.length})` : "No production sample stands out";
    $("drift-witnesses").replaceChildren(...d.witnesses.slice(0, 24).map((w) => {
      const fig = el("figure", "witness");
      fig.dataset.sample = w.sample;
      const caption = el("figcaption", "small");
      caption.append(el("span", "", w.external_id || `#${w.sample}`));
      if (w.predicted_label !== null) caption.append(el("span", "muted", ` · model: ${w.predicted_label} ${pct(w.confidence)}`));
      if (w.drift_flagged) caption.append(el("span", "badge badge-queued", "to label"));
      fig.append(samplePreview(modality, w), caption);
      return fig;
    }));
  }

  const when = (iso) => (iso ? new Date(iso).toLocaleString([], { dateStyle: "short", timeStyle: "short" }) : "—");

  function renderSchedule() {
    const p = state.schedule;
    if (!p) return;
    const s = p.drift && p.drift.schedule;
    $("drift-schedule-status").textContent = s
      ? `next check covers production from ${when(s.window_start)}; due ${when(s.due_at)}`
      : "no schedule: checks run when you ask";
  }

  async function loadSchedule() {
    try {
      const { data } = await api(`/api/v1/projects/${projectId}/`);
      state.schedule = data;
      $("drift-every").value = data.drift_check_hours === null ? "" : String(data.drift_check_hours);
      if ($("drift-every").value !== (data.drift_check_hours === null ? "" : String(data.drift_check_hours))) {
        // a schedule set through the API that the menu does not list
        const opt = el("option", "", `every ${data.drift_check_hours} hours`);
        opt.value = String(data.drift_check_hours);
        $("drift-every").append(opt);
        $("drift-every").value = opt.value;
      }
      $("drift-auto-flag").checked = data.drift_auto_flag;
      $("drift-webhook").value = data.drift_webhook_url;
      $("drift-webhook-signing").hidden = !data.drift_webhook_secret;
      $("drift-webhook-secret").textContent = data.drift_webhook_secret;
      const rotated = data.drift_webhook_secret_rotated_at;
      const overlapEnds = rotated ? new Date(new Date(rotated).getTime() + 24 * 3600 * 1000) : null;
      $("drift-webhook-rotated").textContent = overlapEnds && overlapEnds > new Date()
        ? `replaced ${when(rotated)}; alerts also carry X-Looplab-Signature-Previous (the old secret) until ${when(overlapEnds.toISOString())}`
        : rotated ? `replaced ${when(rotated)}` : "";
    } catch (err) {
      showError(err.message);
    }
    renderSchedule();
  }

  async function load() {
    try {
      const { data } = await api(`/api/v1/projects/${projectId}/drift-checks/`);
      const latest = data[0] || null;
      if (latest && latest.status === "succeeded") {
        if (!state.detail || state.detail.id !== latest.id || state.flagged !== null) {
          state.detail = (await api(`/api/v1/drift-checks/${latest.id}/`)).data;
        }
      } else {
        state.detail = null;
      }
      state.check = latest;
    } catch (err) {
      showError(err.message);
    }
    render();
    const active = state.check && (state.check.status === "queued" || state.check.status === "running");
    $("drift-btn").disabled = Boolean(active);
    clearTimeout(state.polling);
    state.polling = active ? setTimeout(load, 1000) : null;
  }

  $("drift-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("drift-btn").disabled = true;
    try {
      await api(`/api/v1/projects/${projectId}/drift-checks/`, { method: "POST",
        body: { window_hours: Number($("drift-window").value) } });
    } catch (err) {
      showError(err.message);
    }
    await load();
  });

  $("drift-schedule-form").addEventListener("submit", (event) => {
    event.preventDefault();
    return whileDisabled("drift-schedule-btn", async () => {
      const every = $("drift-every").value;
      await api(`/api/v1/projects/${projectId}/`, { method: "PATCH",
        body: { drift_check_hours: every === "" ? null : Number(every), drift_auto_flag: $("drift-auto-flag").checked,
          drift_webhook_url: $("drift-webhook").value.trim() } });
      await loadSchedule();
    });
  });

  $("drift-webhook-rotate").addEventListener("click", () => {
    if (!window.confirm("Make a new signing secret? Receivers should switch to it within a day: until then alerts carry a signature with the old one too.")) return;
    return whileDisabled("drift-webhook-rotate", async () => {
      await api(`/api/v1/projects/${projectId}/drift-webhook-secret/rotate/`, { method: "POST", body: {} });
      await loadSchedule();
    });
  });

  $("drift-flag-btn").addEventListener("click", () => whileDisabled("drift-flag-btn", async () => {
    const { data } = await api(`/api/v1/drift-checks/${state.detail.id}/flag/`, { method: "POST", body: {} });
    state.flagged = data.flagged;
    await load();
  }));

  loadSchedule();
  load();
}
