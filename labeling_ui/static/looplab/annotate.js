// Keyboard-first classification tool on the shared task loop (tool_common.js).
// All state lives in one object, window.__looplab.state (test_hooks.js).
import { createToolLoop, readConfig } from "./tool_common.js";

const config = readConfig();
const image = document.getElementById("item-image");
const audio = document.getElementById("item-audio");
const media = image || audio;

async function showMedia(url, state) {
  media.hidden = false;
  if (image) {
    image.alt = "Image to label";
    image.src = url;
    try {
      await image.decode();
      image.classList.toggle("pixelated", Math.max(image.naturalWidth, image.naturalHeight) < 160);
    } catch {
      state.note = "This item's file could not be shown. Label it if you can tell, or skip it (S).";
    }
  } else {
    audio.src = url;
  }
}

const loop = createToolLoop({
  projectId: config.project,
  labels: config.labels,
  state: { modality: config.modality },
  async onTask(task, state) {
    await showMedia(task.sample.content_url, state);
    state.selected = task.prediction && state.labels.includes(task.prediction.label) ? task.prediction.label : null;
  },
  onEmpty(state) {
    state.selected = null;
    if (media) { media.hidden = true; media.removeAttribute("src"); }
  },
  canSubmit: (state) => state.selected !== null,
  collect(state) {
    if (state.selected === null) throw new Error("Choose a label first: press its key (shown on its button) or click it.");
    return { label: state.selected };
  },
  onSubmitted(last) { last.label = last.result.label; },
});
loop.start();
