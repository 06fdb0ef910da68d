// The task loop shared by every annotation tool: lease → annotate → submit/skip → lease.
//
//   import { createToolLoop } from "./tool_common.js";   // from tools/: "../tool_common.js"
//   const loop = createToolLoop({
//     projectId, labels,                 // from the page's config (json_script "annotate-config")
//     state: { shapes: [] },             // the tool's own fields, merged into the one state object
//     onTask: async (task, state) => {}, // load media, build shapes from task.prediction; may set state.note
//     onEmpty: (state) => {},            // queue empty: clear the stage
//     collect: (state) => result,        // the result to submit; throw new Error("message") to refuse
//     canSubmit: (state) => bool,        // enables the Submit button (default true)
//     onKey: (event, state) => bool,     // tool keys, asked before the loop's own (digits, Enter, S); true = handled
//     onLabel: (label, index, state) => {}, // after a label key / label button picked `label` (state.selected is set)
//     snapshot: (state) => any,          // for loop.checkpoint(): a deep copy of what undo restores...
//     restore: (snap, state) => {},      // ...and how to put it back
//     onHistory: (state) => {},          // after undo/redo (redraw)
//     render: (state) => {},             // called at the end of every panel render
//     describePrediction: (p, task) => string|null, // the #prediction line (default: "Model suggests <label>")
//     hotkeys: [["B", "draw boxes"], ...], // rows for the "?" overlay, shown before the common ones; LABEL_KEY as
//                                        // the keys of a row reads "a label's key" (what the label keys do in the tool)
//     onSubmitted: (last, state) => {},  // after a stored annotation (last = {task, result, active_seconds})
//   });
//   loop.start();
//
// State: ONE object, window.__looplab.state = loop.state. Common fields: project, labels, hotkeys (one key or null per
// label, from hotkeys.js: a digit-named label answers to its digit), task, selected, submitted, skipped,
// status ("loading"|"ready"|"submitting"|"empty"|"error"), error, errorCode, errorDetails, activeSeconds,
// helpOpen, undoDepth, redoDepth, last, note. Tools add theirs through `state`.
//
// Every new item starts with no label chosen: the loop sets state.selected = null before it asks for the next
// task; onTask may then pre-select the model's prediction (or a tool default such as the brush label).
// Nothing else carries over from one item to the next but tool preferences (mode, zoom, colours).
//
// Undo/redo (Ctrl+Z, Ctrl+Shift+Z, Ctrl+Y): two kinds of entry, mixable.
//   loop.checkpoint()               BEFORE an edit: stores snapshot(state) (simple; fine for hundreds of shapes)
//   loop.pushCommand({undo, redo})  AFTER an edit: for big state (per-point labels) where copies cost too much
// Both clear the redo stack. The stacks are emptied when a new task arrives.
//
// DOM (all optional; found by id inside the page): #annotator (data-status), .stage, .panel, #stage-note,
// #item-meta, #prediction, #annotate-error, #submit-button, #skip-button, #count-submitted, #count-skipped,
// #active-time, #empty, #check-again, #help, #help-button, #help-close, #help-keys (a <tbody> filled from
// hotkeys), .label-btn[data-index][data-label] (the label picker; the loop writes each label's key into its
// .hotkey element and aria-keyshortcuts). templates/web/tools/_panel.html and _help.html give the standard markup.
import { api } from "./api.js";
import { labelHotkeys, labelIndexForKey } from "./hotkeys.js";
import { expose } from "./test_hooks.js";

// Refusals after which the item is no longer the annotator's: show why and load the next one.
const TASK_GONE = new Set(["task_done", "task_taken", "not_leased"]);
const IDLE_MS = 30_000;   // activity older than this does not count as working on the item
const TICK_MS = 250;

// A help row whose keys are LABEL_KEY reads "a label's key": the key shown on each label button.
export const LABEL_KEY = "label key";

export const COMMON_HOTKEYS = [
  ["Enter", "submit and load the next item"],
  ["S", "skip this item (it goes back to the queue for others)"],
  ["Ctrl+Z", "undo"],
  ["Ctrl+Shift+Z / Ctrl+Y", "redo"],
  ["?", "show or hide this help"],
  ["Esc", "close this help"],
];

export function isTyping(target) {
  return Boolean(target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)));
}

// The label picker's key, on the button: its .hotkey element (made if missing) and aria-keyshortcuts.
export function showHotkey(button, key) {
  let badge = button.querySelector(".hotkey");
  if (!badge) { badge = document.createElement("kbd"); button.prepend(badge); }
  badge.className = key ? "hotkey" : "hotkey hotkey-none";
  badge.textContent = key || "";
  if (key) {
    badge.removeAttribute("aria-hidden");
    button.setAttribute("aria-keyshortcuts", key);
    button.title = `Key ${key}`;
  } else {
    badge.setAttribute("aria-hidden", "true");
    button.removeAttribute("aria-keyshortcuts");
    button.title = "No key: click to choose";
  }
}

// The "?" overlay's row for the label keys: which key picks which label.
export function labelKeysRow(labels, keys) {
  const keyed = labels.map((label, i) => [keys[i], label]).filter(([k]) => k);
  const list = keyed.map(([k, label]) => `<kbd>${esc(k)}</kbd>&nbsp;${esc(label)}`).join(" · ");
  const rest = labels.length - keyed.length;
  const tail = rest ? ` (${rest} more label${rest === 1 ? "" : "s"} without a key: click them)` : "";
  return `<tr class="label-keys"><th scope="row">label keys</th><td>choose a label: ${list}${tail}</td></tr>`;
}

export function readConfig(id = "annotate-config") {
  return JSON.parse(document.getElementById(id).textContent);
}

const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

function kbdHtml(keys) {
  // "Ctrl+Shift+Z / Ctrl+Y" → <kbd>Ctrl</kbd>+<kbd>Shift</kbd>+<kbd>Z</kbd> / ...; "1 … 9" keeps the ellipsis
  return keys.split(" / ").map((alt) => alt.split(/(\s*…\s*|,\s*)/).map((part) => {
    if (/^\s*…\s*$/.test(part) || /^,\s*$/.test(part)) return esc(part);
    return part.split("+").map((k) => (k === LABEL_KEY ? "a label’s key" : `<kbd>${esc(k)}</kbd>`)).join("+");
  }).join("")).join(" / ");
}

// A function that runs `fn` in the next animation frame, once however often it is called before then.
export function oncePerFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => { queued = false; fn(); });
  };
}

export function createToolLoop(options) {
  const o = options;
  const $ = (id) => document.getElementById(id);
  const root = $("annotator") || document.body;
  const el = {
    note: $("stage-note"), meta: $("item-meta"), prediction: $("prediction"), error: $("annotate-error"),
    submit: $("submit-button"), skip: $("skip-button"), empty: $("empty"), help: $("help"),
    helpButton: $("help-button"), helpClose: $("help-close"), helpKeys: $("help-keys"),
    submitted: $("count-submitted"), skipped: $("count-skipped"), time: $("active-time"),
    checkAgain: $("check-again"),
  };
  const labelButtons = [...document.querySelectorAll(".label-btn")];

  const state = Object.assign({
    project: o.projectId,
    labels: o.labels,
    hotkeys: labelHotkeys(o.labels),
    task: null,
    selected: null,
    submitted: 0,
    skipped: 0,
    status: "loading",
    error: null,
    errorCode: null,
    errorDetails: null,
    activeSeconds: 0,
    helpOpen: false,
    undoDepth: 0,
    redoDepth: 0,
    last: null,
    note: null,
  }, o.state || {});
  expose("state", state);

  // -- active time: visible tab and some input in the last IDLE_MS --------------------------------
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
  function activity() { tick(); lastActivity = performance.now(); }
  for (const type of ["keydown", "pointerdown", "pointermove", "wheel", "touchstart", "scroll"]) {
    window.addEventListener(type, activity, { passive: true, capture: true });
  }
  document.addEventListener("visibilitychange", () => {
    tick();
    lastTick = performance.now();
    if (document.visibilityState === "visible") lastActivity = performance.now();
  });
  setInterval(() => { tick(); renderTime(); }, TICK_MS);

  // -- undo / redo ---------------------------------------------------------------------------------
  const undoStack = [];
  const redoStack = [];

  function depths() { state.undoDepth = undoStack.length; state.redoDepth = redoStack.length; }

  function checkpoint() {
    if (!o.snapshot) throw new Error("checkpoint() needs options.snapshot/restore");
    undoStack.push({ snap: o.snapshot(state) });
    redoStack.length = 0;
    depths();
  }
  function pushCommand(command) {
    undoStack.push({ command });
    redoStack.length = 0;
    depths();
  }
  function step(from, to, forward) {
    if (!from.length || state.status !== "ready") return false;
    const entry = from.pop();
    if (entry.command) {
      forward ? entry.command.redo(state) : entry.command.undo(state);
      to.push(entry);
    } else {
      to.push({ snap: o.snapshot(state) });
      o.restore(entry.snap, state);
    }
    depths();
    if (o.onHistory) o.onHistory(state);
    render();
    return true;
  }
  const undo = () => step(undoStack, redoStack, false);
  const redo = () => step(redoStack, undoStack, true);
  function clearHistory() { undoStack.length = 0; redoStack.length = 0; depths(); }

  // -- rendering -------------------------------------------------------------------------------------
  function renderTime() {
    if (!el.time) return;
    const s = state.activeSeconds;
    el.time.textContent = s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  }

  function describe(p, task) {
    if (o.describePrediction) return o.describePrediction(p, task);
    if (!p || !p.label) return null;
    const confidence = typeof p.confidence === "number" ? ` (${Math.round(p.confidence * 100)}%)` : "";
    return `Model suggests “${p.label}”${confidence}: check it, then press Enter.`;
  }

  function render() {
    root.dataset.status = state.status;
    const working = state.status === "ready";
    const task = state.task;
    for (const button of labelButtons) {
      const on = button.dataset.label === state.selected;
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.classList.toggle("is-selected", on);
      button.classList.toggle("is-predicted", Boolean(task && task.prediction && task.prediction.label === button.dataset.label));
      button.disabled = !working;
    }
    if (el.submit) el.submit.disabled = !working || (o.canSubmit ? !o.canSubmit(state) : false);
    if (el.skip) el.skip.disabled = !working;
    if (el.submitted) el.submitted.textContent = String(state.submitted);
    if (el.skipped) el.skipped.textContent = String(state.skipped);
    renderTime();

    const empty = state.status === "empty";
    if (el.empty) el.empty.hidden = !empty;
    for (const part of root.querySelectorAll(":scope > .stage, :scope > .panel")) part.hidden = empty;

    if (el.error) { el.error.hidden = !state.error; el.error.textContent = state.error || ""; }
    if (el.note) {
      if (state.status === "loading") { el.note.hidden = false; el.note.textContent = "Loading the next task…"; }
      else if (state.status === "submitting") { el.note.hidden = false; el.note.textContent = "Saving…"; }
      else { el.note.hidden = !(working && state.note); if (state.note) el.note.textContent = state.note; }
    }
    if (el.prediction) {
      const text = task && task.prediction ? describe(task.prediction, task) : null;
      el.prediction.hidden = !text;
      el.prediction.textContent = text || "";
    }
    if (el.meta) {
      if (task) {
        const s = task.sample;
        const extra = Object.entries(s.metadata || {}).slice(0, 4)
          .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
        el.meta.textContent = [`task ${task.id}`, s.external_id ? `id ${s.external_id}` : null, ...extra].filter(Boolean).join(" · ");
      } else {
        el.meta.textContent = "";
      }
    }
    if (o.render) o.render(state);
  }

  function showError(err) {
    state.error = err.message;
    state.errorCode = err.code || null;
    state.errorDetails = err.details || null;
  }
  function clearError() { state.error = null; state.errorCode = null; state.errorDetails = null; }

  // -- help overlay --------------------------------------------------------------------------------
  for (const button of labelButtons) showHotkey(button, state.hotkeys[Number(button.dataset.index)]);
  if (el.helpKeys) {
    el.helpKeys.innerHTML = labelKeysRow(state.labels, state.hotkeys) + [...(o.hotkeys || []), ...COMMON_HOTKEYS]
      .map(([keys, what]) => `<tr><th scope="row">${kbdHtml(keys)}</th><td>${what}</td></tr>`).join("");
  }
  let focusBeforeHelp = null;
  function setHelp(open) {
    if (!el.help || open === state.helpOpen) return;
    state.helpOpen = open;
    el.help.hidden = !open;
    if (el.helpButton) el.helpButton.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      focusBeforeHelp = document.activeElement;
      if (el.helpClose) el.helpClose.focus();
    } else if (focusBeforeHelp && focusBeforeHelp !== document.body && document.contains(focusBeforeHelp)) {
      focusBeforeHelp.focus();
    } else if (document.activeElement) {
      document.activeElement.blur();
    }
  }

  // -- the loop --------------------------------------------------------------------------------------
  async function loadNext() {
    state.status = "loading";
    state.selected = null;  // a choice belongs to one item: the next starts with none (onTask may pre-select)
    render();
    let response;
    try {
      response = await api(`/api/v1/projects/${state.project}/tasks/next/`, { method: "POST" });
    } catch (err) {
      state.status = "error";
      showError(err);
      state.error = `${err.message} Press Enter to try again.`;
      render();
      return;
    }
    clearHistory();
    if (response.status === 204 || !response.data) {
      state.task = null;
      state.status = "empty";
      state.note = null;
      if (o.onEmpty) o.onEmpty(state);
      render();
      return;
    }
    const task = response.data;
    state.note = null;
    state.task = task;
    try {
      if (o.onTask) await o.onTask(task, state);
    } catch (err) {
      state.note = state.note || `This item could not be shown (${err.message}). Label it if you can, or skip it (S).`;
    }
    state.status = "ready";
    state.activeSeconds = 0;
    lastTick = lastActivity = performance.now();
    render();
  }

  async function submit() {
    if (state.status !== "ready") return;
    let result;
    try {
      result = o.collect(state);
    } catch (err) {
      state.error = err.message;
      render();
      return;
    }
    tick();
    const task = state.task;
    const seconds = Math.round(state.activeSeconds * 100) / 100;
    state.status = "submitting";
    clearError();
    render();
    try {
      await api(`/api/v1/tasks/${task.id}/annotations/`, {
        method: "POST", body: { result, active_seconds: seconds },
      });
      state.submitted += 1;
      state.last = { task: task.id, result, active_seconds: seconds };
      if (o.onSubmitted) o.onSubmitted(state.last, state);
    } catch (err) {
      showError(err);
      if (!TASK_GONE.has(err.code)) {
        state.status = "ready";  // keep the item: the user can fix it, retry or skip
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
    clearError();
    render();
    try {
      await api(`/api/v1/tasks/${task.id}/skip/`, { method: "POST" });
      state.skipped += 1;
    } catch (err) {
      showError(err);
      if (!TASK_GONE.has(err.code)) {
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
    clearError();
    if (o.onLabel) o.onLabel(state.selected, index, state);
    render();
  }

  // -- input -----------------------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (isTyping(target)) return;
    const key = event.key;
    const mod = event.ctrlKey || event.metaKey;
    if (mod && !event.altKey && (key === "z" || key === "Z" || key === "y" || key === "Y")) {
      event.preventDefault();
      if (key === "y" || key === "Y" || event.shiftKey) redo(); else undo();
      return;
    }
    if (key === "?") { event.preventDefault(); setHelp(!state.helpOpen); return; }
    if (key === "Escape" && state.helpOpen) { event.preventDefault(); setHelp(false); return; }
    if (state.helpOpen) return;
    if (o.onKey && state.status === "ready" && o.onKey(event, state)) { event.preventDefault(); return; }
    if (mod || event.altKey) return;
    if (/^[0-9]$/.test(key)) {
      event.preventDefault();
      choose(labelIndexForKey(state.hotkeys, key));  // -1 (a digit no label has): nothing
    } else if (key === "Enter") {
      if (state.status === "empty") return;  // let Enter activate the focused button there
      if (state.status === "error") { event.preventDefault(); clearError(); loadNext(); return; }
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
  if (el.submit) el.submit.addEventListener("click", submit);
  if (el.skip) el.skip.addEventListener("click", skip);
  if (el.checkAgain) el.checkAgain.addEventListener("click", loadNext);
  if (el.helpButton) el.helpButton.addEventListener("click", () => setHelp(!state.helpOpen));
  if (el.helpClose) el.helpClose.addEventListener("click", () => setHelp(false));
  if (el.help) el.help.addEventListener("click", (event) => { if (event.target === el.help) setHelp(false); });

  return {
    state, render, start: loadNext, loadNext, submit, skip, choose, setHelp,
    checkpoint, pushCommand, undo, redo, clearHistory, tick,
  };
}
