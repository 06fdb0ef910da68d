// The project page's Exports section: start an export job, follow its progress, download the file.
import { api } from "./api.js";
import { expose } from "./test_hooks.js";
import { jobProgress, showPageError } from "./job.js";

const section = document.getElementById("exports");
const FORMATS = {
  classification: [["csv", "CSV (sample, label, split)"], ["json", "JSON (sample, label, split)"]],
  detection: [["coco", "COCO (json)"], ["yolo", "YOLO (zip: images, txt, data.yaml)"], ["voc", "Pascal VOC (zip of XML)"]],
  audio_regions: [["regions_csv", "Regions + transcripts (CSV)"], ["regions_json", "Regions + transcripts (JSON)"]],
  cuboids: [["kitti", "KITTI-style labels (zip)"], ["cuboids_json", "Cuboids (JSON)"]],
  point_segmentation: [["npy", "Per-point labels .npy (zip)"], ["ply", "PLY with a label field (zip)"]],
};

if (section) {
  const projectId = section.dataset.project;
  const select = document.getElementById("export-format");
  const rows = document.getElementById("export-rows");
  const table = document.getElementById("export-table");
  const state = { exports: [], polling: null, downloads: 0, error: null };
  expose("exports", state);
  for (const [value, text] of FORMATS[section.dataset.taskType] || []) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = text;
    select.append(option);
  }

  const cell = (text, cls) => { const td = document.createElement("td"); if (cls) td.className = cls; td.textContent = text; return td; };

  function render() {
    table.hidden = state.exports.length === 0;
    rows.replaceChildren();
    for (const e of state.exports) {
      const tr = document.createElement("tr");
      tr.dataset.id = e.id;
      tr.dataset.status = e.status;
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = `#${e.id}`;
      const data = e.dataset_version ? `dataset v${e.dataset_version.number}` : `${e.annotations} annotations`;
      const progress = document.createElement("td");
      progress.append(jobProgress(e, { label: "Export progress", cancelUrl: `/api/v1/exports/${e.id}/cancel/` }));
      const file = document.createElement("td");
      if (e.download_url) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "btn btn-small";
        button.dataset.download = e.download_url;
        button.textContent = `Download ${e.filename.split(".").pop()}`;
        button.title = `${e.filename} (${(e.size_bytes / 1024).toFixed(1)} KiB)`;
        file.append(button);
      } else {
        file.textContent = "—";
      }
      tr.append(th, cell(e.format), cell(data, "small"), progress, file);
      rows.append(tr);
    }
  }

  async function load() {
    try {
      const { data } = await api(`/api/v1/projects/${projectId}/exports/`);
      state.exports = data;
      state.error = null;
    } catch (err) {
      state.error = err.message;
    }
    render();
    const active = state.exports.some((e) => e.status === "queued" || e.status === "running");
    clearTimeout(state.polling);
    state.polling = active ? setTimeout(load, 1000) : null;
  }

  document.getElementById("export-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = document.getElementById("export-btn");
    button.disabled = true;
    try {
      await api(`/api/v1/projects/${projectId}/exports/`, { method: "POST",
        body: { format: select.value, reviewed_only: Boolean(document.getElementById("export-reviewed") && document.getElementById("export-reviewed").checked) } });
      await load();
    } catch (err) {
      state.error = err.message;
      showPageError(err.message);
    } finally {
      button.disabled = false;
    }
  });

  rows.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-download]");
    if (!button) return;
    state.downloads += 1;
    const link = document.createElement("a");  // the session cookie authenticates the download
    link.href = button.dataset.download;
    link.download = "";
    document.body.append(link);
    link.click();
    link.remove();
  });

  load();
}
