// Image tool input, pure: which cursor a pointer state shows, and what the state-free keys ask for.

const RESIZE_CURSORS = { nw: "nwse-resize", se: "nwse-resize", ne: "nesw-resize", sw: "nesw-resize", n: "ns-resize",
  s: "ns-resize", e: "ew-resize", w: "ew-resize" };

// The canvas cursor for the mode, the Space key, the gesture in progress (drag) and what is under the pointer.
export function cursorFor(mode, spaceDown, drag, hover) {
  if (spaceDown || (drag && drag.type === "pan")) return drag && drag.type === "pan" ? "grabbing" : "grab";
  if (drag && drag.type === "move") return "move";
  if (hover && hover.type === "handle") return RESIZE_CURSORS[hover.handle];
  if (hover && hover.type === "vertex") return "pointer";
  if (hover && hover.type === "edge") return "copy";
  if (hover && hover.type === "shape" && mode === "select") return "move";
  return mode === "select" ? "default" : "crosshair";
}

export const ZOOM_IN = 1.25;
export const ZOOM_OUT = 0.8;

// The command for a key that needs no state (Ctrl/Meta/Alt are the caller's): {mode}, {fit}, {zoom: factor}
// about the view's centre, {nudge: [dx, dy]} in screen px (Shift: 10 px), or null.
export function keyCommand(key, shiftKey) {
  const lower = key.length === 1 ? key.toLowerCase() : key;
  if (lower === "v") return { mode: "select" };
  if (lower === "b") return { mode: "box" };
  if (lower === "p") return { mode: "polygon" };
  if (lower === "f") return { fit: true };
  if (key === "+" || key === "=") return { zoom: ZOOM_IN };
  if (key === "-" || key === "_") return { zoom: ZOOM_OUT };
  const step = shiftKey ? 10 : 1;
  if (key === "ArrowLeft") return { nudge: [-step, 0] };
  if (key === "ArrowRight") return { nudge: [step, 0] };
  if (key === "ArrowUp") return { nudge: [0, -step] };
  if (key === "ArrowDown") return { nudge: [0, step] };
  return null;
}
