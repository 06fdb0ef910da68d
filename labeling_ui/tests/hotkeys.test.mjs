// node --test labeling_ui/tests/   (Node's own runner, no dependencies; tests/labeling_ui runs it under pytest)
import assert from "node:assert/strict";
import { test } from "node:test";

import { labelHotkeys, labelIndexForKey } from "../static/looplab/hotkeys.js";

const digits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

test("digit-named labels answer to their own digit, in any order", () => {
  assert.deepEqual(labelHotkeys(digits), digits);
  const shuffled = ["3", "9", "0", "1", "7", "2", "8", "6", "4", "5"];
  assert.deepEqual(labelHotkeys(shuffled), shuffled);
  const keys = labelHotkeys(digits);
  for (const d of digits) assert.equal(digits[labelIndexForKey(keys, d)], d);
});

test("other labels keep positions: 1 … 9, then 0, then no key", () => {
  const names = Array.from({ length: 12 }, (_, i) => `class ${i}`);
  assert.deepEqual(labelHotkeys(names), ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", null, null]);
  assert.deepEqual(labelHotkeys(["cat", "dog"]), ["1", "2"]);
  assert.deepEqual(labelHotkeys([]), []);
});

test("mixed: never a digit another label is named after", () => {
  assert.deepEqual(labelHotkeys(["cat", "1", "dog"]), ["2", "1", "3"]);
  assert.deepEqual(labelHotkeys(["a", "b", "7"]), ["1", "2", "7"]);
  const keys = labelHotkeys(["x", "0", "y", "1", "z", "2", "w", "3", "v", "4", "u", "5"]);
  assert.deepEqual(keys, ["6", "0", "7", "1", "8", "2", "9", "3", null, "4", null, "5"]);
  assert.equal(new Set(keys.filter(Boolean)).size, keys.filter(Boolean).length);  // one label per key
});

test("only a single ASCII digit counts as digit-named", () => {
  assert.deepEqual(labelHotkeys(["10", "07", " 7", "٣", "7"]), ["1", "2", "3", "4", "7"]);
});

test("labelIndexForKey", () => {
  const keys = labelHotkeys(["cat", "1", "dog"]);
  assert.equal(labelIndexForKey(keys, "1"), 1);
  assert.equal(labelIndexForKey(keys, "3"), 2);
  assert.equal(labelIndexForKey(keys, "4"), -1);
  assert.equal(labelIndexForKey(keys, "Enter"), -1);
});
