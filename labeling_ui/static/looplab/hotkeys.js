// Which digit key picks which label: one rule for every tool (the task loop, the review page, the audio
// tool's Shift+digit). Pure, no DOM: labelHotkeys(labels) → one key ("0"…"9") or null per label, in order.
//
// The rule, so that the key an annotator presses is the label they see:
//   1. a label named exactly like one digit ("0" … "9") answers to that digit;
//   2. every other label takes the digits no label is named after, in label order, from 1 … 9 then 0
//      (with no digit-named labels: the first nine labels get 1 … 9 and the tenth 0, by position);
//   3. labels beyond the free digits get no key: they are picked by clicking their button.
// Examples: ["0" … "9"] → "0" … "9"; ["cat", "dog"] → "1", "2"; ["cat", "1", "dog"] → "2", "1", "3";
// ["7", "a", …] → "7", "1", … (never "7" for "a").

export const DIGIT_ORDER = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

export function isDigitName(label) {
  return typeof label === "string" && /^[0-9]$/.test(label);
}

export function labelHotkeys(labels) {
  const named = new Set();
  const keys = labels.map((label) => {
    if (!isDigitName(label) || named.has(label)) return null;  // a repeated name (labels are unique) keeps one key
    named.add(label);
    return label;
  });
  const free = DIGIT_ORDER.filter((d) => !named.has(d));
  return keys.map((k) => k ?? free.shift() ?? null);
}

// The index of the label `key` picks in `keys` (labelHotkeys' output), or -1.
export function labelIndexForKey(keys, key) {
  return typeof key === "string" && key.length === 1 ? keys.indexOf(key) : -1;
}
