// One job's progress bar, status badge, percent and message (rounds, exports, label checks...),
// the same markup as the server-rendered web/_progress.html.

export function jobProgress(job, { label, message } = {}) {
  const pct = Math.round(job.progress);
  const cls = job.status === "succeeded" ? "is-done" : job.status === "failed" ? "is-failed" : "is-running";
  const box = document.createElement("div");
  box.className = "job";
  box.innerHTML = `<div class="progress ${cls}" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct}"><div class="progress-fill" style="width:${pct}%"></div></div><div class="job-line"><span class="badge badge-${job.status} job-status"></span><span class="job-pct">${pct}%</span><span class="job-msg"></span></div>`;
  box.querySelector(".progress").setAttribute("aria-label", label || "Progress");
  box.querySelector(".job-status").textContent = job.status;
  box.querySelector(".job-msg").textContent =
    job.status === "failed" ? (job.error || "").slice(0, 300) : (message !== undefined ? message : job.message);
  return box;
}
