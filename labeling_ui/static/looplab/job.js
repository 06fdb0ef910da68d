// Shared pieces of the project page's job sections (exports, label checks, drift checks): a job's
// progress bar (the same markup as the server-rendered web/_progress.html) with its Cancel button, small
// DOM helpers, a preview of a sample's content, and the page's error box.
import { api } from "./api.js";

const ACTIVE = new Set(["queued", "running"]);

// A Cancel button for a queued or running job (POST <cancelUrl>; the job stops at its next progress point).
export function cancelButton(job, cancelUrl) {
  const button = el("button", "btn btn-small job-cancel", "Cancel");
  button.type = "button";
  button.dataset.cancelUrl = cancelUrl;
  button.hidden = !ACTIVE.has(job.status) || Boolean(job.cancel_requested);
  return button;
}

// One handler for every Cancel button on the page, server-rendered or built by jobProgress().
document.addEventListener("click", async (event) => {
  const button = event.target.closest(".job-cancel");
  if (!button || button.disabled) return;
  button.disabled = true;
  button.textContent = "Cancelling…";
  try {
    const { data } = await api(button.dataset.cancelUrl, { method: "POST" });
    const msg = button.closest(".job") && button.closest(".job").querySelector(".job-msg");
    if (msg) msg.textContent = data.status === "cancelled" ? "cancelled" : "cancelling…";
    button.hidden = true;
    document.dispatchEvent(new CustomEvent("looplab:job-cancel", { detail: data }));
  } catch (err) {
    button.disabled = false;
    button.textContent = "Cancel";
    showPageError(err.message);
  }
});

export function jobProgress(job, { label, message, cancelUrl } = {}) {
  const pct = Math.round(job.progress);
  const cls = job.status === "succeeded" ? "is-done" : job.status === "failed" ? "is-failed" : "is-running";
  const box = document.createElement("div");
  box.className = "job";
  box.innerHTML = `<div class="progress ${cls}" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct}"><div class="progress-fill" style="width:${pct}%"></div></div><div class="job-line"><span class="badge badge-${job.status} job-status"></span><span class="job-pct">${pct}%</span><span class="job-msg"></span></div>`;
  box.querySelector(".progress").setAttribute("aria-label", label || "Progress");
  box.querySelector(".job-status").textContent = job.status;
  box.querySelector(".job-msg").textContent =
    job.status === "failed" ? (job.error || "").slice(0, 300) : (message !== undefined ? message : job.message);
  if (cancelUrl) box.querySelector(".job-line").append(cancelButton(job, cancelUrl));
  return box;
}

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A thumbnail (image), a player (audio) or a link (point cloud) for an item with content_url.
export function samplePreview(modality, item) {
  if (modality === "image") {
    const img = el("img", "finding-thumb");
    img.src = item.content_url;
    img.alt = `sample ${item.external_id || item.sample}`;
    img.loading = "lazy";
    return img;
  }
  if (modality === "audio") {
    const audio = el("audio", "finding-audio");
    audio.controls = true;
    audio.preload = "none";
    audio.src = item.content_url;
    return audio;
  }
  const link = el("a", "small", "open");
  link.href = item.content_url;
  return link;
}

// The error shape's message in the page's status box (#action-status).
export function showPageError(message) {
  const box = document.getElementById("action-status");
  if (box) { box.hidden = false; box.className = "alert alert-error"; box.textContent = message; }
}
