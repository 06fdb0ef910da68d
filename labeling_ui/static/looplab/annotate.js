// Keyboard-first classification tool. All state lives in one object, window.__looplab.
import { api } from "./api.js";

const config = JSON.parse(document.getElementById("annotate-config").textContent);
const IDLE_MS = 30_000;   // activity older than this does not count as working on the item
const TICK_MS = 250;

const state = {
  project: config.project,
  labels: config.labels,
  modality: config.modality,
  task: null,          // the leased task as the API returned it
  selected: null,      // the chosen label (string) or null
  submitted: 0,        // annotations stored in this page's life
  skipped: 0,
  status: "loading",   // loading | ready | submitting | empty | error
  error: null,
  activeSeconds: 0,    // active time on the current item
  helpOpen: false,
  last: null,          // the last submission: {task, label, active_seconds}
};
window.__looplab = state;

const $ = (id) => document.getElementById(id);
const root = $("annotator");
const image = $("item-image");
const audio = $("item-audio");
const media = image || audio;
const note = $("stage-note");
const meta = $("item-meta");
const prediction = $("prediction");
const errorBox = $("annotate-error");
const submitButton = $("submit-button");
const skipButton = $("skip-button");
const emptyBox = $("empty");
const help = $("help");
const helpButton = $("help-button");
const labelButtons = [...document.querySelectorAll(".label-btn")];

// -- active time: visible tab and some input in the last IDLE_MS ------------------------------

let lastActivity = performance.now();
let lastTick = performance.now();

function tick() {
  const now = performance.now();
  const dt = Math.min(now - lastTick, 1000);  // a throttled or suspended timer must not add a lump
  lastTick = now;
  if (state.status === "ready" && document.visibilityState === "visible" && now - lastActivity <= IDLE_MS) {
    state.activeSeconds += dt / 1000;
  }
}

function activity() {
  tick();
  lastActivity = performance.now();
}

for (const type of ["keydown", "pointerdown", "pointermove", "wheel", "touchstart", "scroll"]) {
  window.addEventListener(type, activity, { passive: true, capture: true });
}
document.addEventListener("visibilitychange", () => {
  tick();
  lastTick = performance.now();
  if (document.visibilityState === "visible") lastActivity = performance.now();
});
setInterval(() => { tick(); renderTime(); }, TICK_MS);

// -- rendering ----------------------------------------------------------------------------------

function renderTime() {
  const s = state.activeSeconds;
  $("active-time").textContent = s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
}

function render() {
  root.dataset.status = state.status;
  const working = state.status === "ready";
  const hasTask = Boolean(state.task);
  for (const button of labelButtons) {
    const on = button.dataset.label === state.selected;
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.classList.toggle("is-selected", on);
    button.classList.toggle("is-predicted", hasTask && state.task.prediction && state.task.prediction.label === button.dataset.label);
    button.disabled = !working;
  }
  submitButton.disabled = !working || state.selected === null;
  skipButton.disabled = !working;
  $("count-submitted").textContent = String(state.submitted);
  $("count-skipped").textContent = String(state.skipped);
  renderTime();

  const empty = state.status === "empty";
  emptyBox.hidden = !empty;
  root.querySelector(".stage").hidden = empty;
  root.querySelector(".panel").hidden = empty;

  errorBox.hidden = !state.error;
  errorBox.textContent = state.error || "";

  if (state.status === "loading") { note.hidden = false; note.textContent = "Loading the next task…"; }
  else if (state.status === "submitting") { note.hidden = false; note.textContent = "Saving…"; }
  else note.hidden = !(working && media.dataset.failed === "true");

  const p = hasTask ? state.task.prediction : null;
  prediction.hidden = !p;
  if (p) {
    const confidence = typeof p.confidence === "number" ? ` (${Math.round(p.confidence * 100)}%)` : "";
    prediction.textContent = `Model suggests “${p.label}”${confidence}: check it, then press Enter.`;
  }
  if (hasTask) {
    const s = state.task.sample;
    const extra = Object.entries(s.metadata || {}).slice(0, 4).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
    meta.textContent = [`task ${state.task.id}`, s.external_id ? `id ${s.external_id}` : null, ...extra].filter(Boolean).join(" · ");
  } else {
    meta.textContent = "";
  }
}

let focusBeforeHelp = null;

function setHelp(open) {
  if (open === state.helpOpen) return;
  state.helpOpen = open;
  help.hidden = !open;
  helpButton.setAttribute("aria-expanded", open ? "true" : "false");
  if (open) {
    focusBeforeHelp = document.activeElement;
    $("help-close").focus();
  } else if (focusBeforeHelp && focusBeforeHelp !== document.body && document.contains(focusBeforeHelp)) {
    focusBeforeHelp.focus();
  } else {
    document.activeElement.blur();
  }
}

// -- the loop: lease → label → submit → lease -------------------------------------------------

async function showMedia(url) {
  media.dataset.failed = "false";
  media.hidden = false;
  if (image) {
    image.alt = "Image to label";
    image.src = url;
    try {
      await image.decode();
      image.classList.toggle("pixelated", Math.max(image.naturalWidth, image.naturalHeight) < 160);
    } catch {
      media.dataset.failed = "true";
      note.textContent = "This item's file could not be shown. Label it if you can tell, or skip it (S).";
    }
  } else {
    audio.src = url;
  }
}

async function loadNext() {
  state.status = "loading";
  render();
  let response;
  try {
    response = await api(`/api/v1/projects/${state.project}/tasks/next/`, { method: "POST" });
  } catch (err) {
    state.status = "error";
    state.error = `${err.message} Press Enter to try again.`;
    render();
    return;
  }
  if (response.status === 204 || !response.data) {
    state.task = null;
    state.selected = null;
    state.status = "empty";
    if (media) { media.hidden = true; media.removeAttribute("src"); }
    render();
    return;
  }
  const task = response.data;
  await showMedia(task.sample.content_url);
  const suggested = task.prediction && state.labels.includes(task.prediction.label) ? task.prediction.label : null;
  Object.assign(state, { task, selected: suggested, status: "ready", activeSeconds: 0 });
  lastTick = lastActivity = performance.now();
  render();
}

async function submit() {
  if (state.status !== "ready") return;
  if (state.selected === null) {
    state.error = "Choose a label first (keys 1–9 and 0).";
    render();
    return;
  }
  tick();
  const task = state.task;
  const label = state.selected;
  const seconds = Math.round(state.activeSeconds * 100) / 100;
  state.status = "submitting";
  state.error = null;
  render();
  try {
    await api(`/api/v1/tasks/${task.id}/annotations/`, {
      method: "POST", body: { result: { label }, active_seconds: seconds },
    });
    state.submitted += 1;
    state.last = { task: task.id, label, active_seconds: seconds };
  } catch (err) {
    state.error = err.message;
    if (err.code !== "task_done" && err.code !== "not_leased") {
      state.status = "ready";  // keep the item: the user can retry or skip
      render();
      return;
    }
    state.error += " Loading the next item.";
  }
  await loadNext();
}

async function skip() {
  if (state.status !== "ready") return;
  const task = state.task;
  state.status = "submitting";
  state.error = null;
  render();
  try {
    await api(`/api/v1/tasks/${task.id}/skip/`, { method: "POST" });
    state.skipped += 1;
  } catch (err) {
    state.error = err.message;
    if (err.code !== "task_done" && err.code !== "not_leased") {
      state.status = "ready";
      render();
      return;
    }
  }
  await loadNext();
}

function choose(index) {
  if (state.status !== "ready" || index < 0 || index >= state.labels.length) return;
  state.selected = state.labels[index];
  state.error = null;
  render();
}

// -- input ----------------------------------------------------------------------------------------

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) return;
  const key = event.key;
  if (key === "?") { event.preventDefault(); setHelp(!state.helpOpen); return; }
  if (key === "Escape" && state.helpOpen) { event.preventDefault(); setHelp(false); return; }
  if (/^[0-9]$/.test(key)) {
    event.preventDefault();
    choose(key === "0" ? 9 : Number(key) - 1);
  } else if (key === "Enter") {
    if (state.status === "empty") return;  // let Enter activate the focused button there
    if (state.status === "error") { event.preventDefault(); state.error = null; loadNext(); return; }
    event.preventDefault();  // no click on a focused button: one Enter, one submission
    submit();
  } else if (key === "s" || key === "S") {
    event.preventDefault();
    skip();
  }
});

for (const button of labelButtons) {
  button.addEventListener("click", () => choose(Number(button.dataset.index)));
}
submitButton.addEventListener("click", submit);
skipButton.addEventListener("click", skip);
$("check-again").addEventListener("click", loadNext);
helpButton.addEventListener("click", () => setHelp(!state.helpOpen));
$("help-close").addEventListener("click", () => setHelp(false));
help.addEventListener("click", (event) => { if (event.target === help) setHelp(false); });

loadNext();
