// node --test labeling_ui/tests/   The audio tool's pure modules: formatting, the time axis, regions.
import assert from "node:assert/strict";
import { test } from "node:test";

import { colorFor, decodePeaks, fmtTime, NO_LABEL_COLOR, nextPow2, PALETTE, rgba, round3 } from "../static/looplab/tools/audio/format.js";
import {
  describePrediction, firstUnlabeled, predictedRegions, regionsResult, sortedRegionIds, stepIndex, visibleRows,
} from "../static/looplab/tools/audio/regions.js";
import {
  bucketsFor, rulerTicks, spectrogramSource, visibleSpan, zoomFocus, zoomTarget,
} from "../static/looplab/tools/audio/timeline.js";

test("times, colours and rounding", () => {
  assert.equal(fmtTime(0), "0:00.00");
  assert.equal(fmtTime(75.256), "1:15.26");
  assert.equal(fmtTime(3725.5), "1:02:05.50");
  assert.equal(fmtTime(75.9, false), "1:15");
  assert.equal(fmtTime(NaN), "0:00.00");
  assert.equal(rgba("#3b82f6", 0.5), "rgba(59, 130, 246, 0.5)");
  assert.equal(colorFor(["a", "b"], "b"), PALETTE[1]);
  assert.equal(colorFor(["a", "b"], null), NO_LABEL_COLOR);
  assert.equal(round3(1.23456), 1.235);
  assert.deepEqual([0, 1, 3, 4, 1000].map(nextPow2), [1, 1, 4, 4, 1024]);
});

test("peaks decode int16 min/max pairs", () => {
  const raw = new Int16Array([-32767, 32767, 0, 16384]);
  const { min, max, buckets } = decodePeaks(raw.buffer);
  assert.equal(buckets, 2);
  assert.deepEqual([...min], [-1, 0]);
  assert.deepEqual([...max].map(round3), [1, 0.5]);
});

test("visible span, zoom target and the time a zoom keeps in place", () => {
  assert.deepEqual(visibleSpan(0, 500, 1000, 10), [0, 5]);
  assert.deepEqual(visibleSpan(800, 500, 1000, 10), [8, 10]);
  assert.equal(zoomTarget(100.05, 100, 1000), 0);  // at the fit width: fit
  assert.equal(zoomTarget(300, 100, 1000), 300);
  assert.equal(zoomTarget(5000, 100, 1000), 1000);
  assert.equal(zoomFocus([2, 6], { start: 3, end: 4 }, 5), 3.5);
  assert.equal(zoomFocus([2, 6], null, 5), 5);
  assert.equal(zoomFocus([2, 6], null, 9), 4);
  assert.equal(zoomFocus([0, 6], null, 0), 3);
});

test("peaks resolution: a power of two per device pixel, capped", () => {
  assert.equal(bucketsFor(10, 100, 1, 1 << 19), 1024);
  assert.equal(bucketsFor(10, 100, 2, 1 << 19), 2048);
  assert.equal(bucketsFor(3600, 1000, 2, 1 << 19), 1 << 19);
});

test("ruler ticks: a major step at least 80 px, labelled, with minor ticks between", () => {
  const ticks = rulerTicks(0, 2, 100, 2);  // 100 px/s: 1 s steps, 0.2 s minor ticks
  assert.equal(ticks.length, 11);
  assert.deepEqual(ticks.filter((t) => t.major).map((t) => t.label), ["0 s", "1 s", "2 s"]);
  assert.ok(ticks.filter((t) => !t.major).every((t) => t.label === null));
  const fine = rulerTicks(0, 0.2, 1000, 2);  // 0.1 s steps (2 s clip)
  assert.deepEqual(fine.filter((t) => t.major).map((t) => t.label), ["0.0", "0.1", "0.2"]);
  const long = rulerTicks(60, 240, 1, 300);  // 120 s steps, times as m:ss
  assert.deepEqual(long.filter((t) => t.major).map((t) => t.label), ["2:00", "4:00"]);
  const fifths = rulerTicks(0, 1, 400, 1);  // 0.2 s steps, 0.04 s minor ticks
  assert.equal(fifths.length, 26);
  assert.deepEqual(fifths.filter((t) => t.major).map((t) => t.label), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
  const twos = rulerTicks(0, 4, 40, 4);  // 2 s steps: 4 minor ticks to a step
  assert.equal(twos.length, 9);
});

test("the spectrogram's source rectangle follows the visible span", () => {
  assert.deepEqual(spectrogramSource(0, 5, 10, 2048), [0, 1024]);
  assert.deepEqual(spectrogramSource(5, 5, 10, 2048), [1024, 0.5]);
});

test("regions sort by start then end; steps stay in the list", () => {
  const regions = [{ id: "a", start: 2, end: 3 }, { id: "b", start: 1, end: 5 }, { id: "c", start: 1, end: 2 }];
  assert.deepEqual(sortedRegionIds(regions), ["c", "b", "a"]);
  assert.equal(stepIndex(-1, 1, 3), 0);
  assert.equal(stepIndex(-1, -1, 3), 2);
  assert.equal(stepIndex(2, 1, 3), 2);
  assert.equal(stepIndex(0, -1, 3), 0);
  assert.equal(stepIndex(1, 1, 3), 2);
  assert.deepEqual(visibleRows(0, 216, 100, 36), [0, 10]);
  assert.deepEqual(visibleRows(360, 216, 12, 36), [6, 12]);
});

test("predicted regions: finite, non-empty, clipped, unknown labels dropped", () => {
  let n = 0;
  const newId = () => `r${++n}`;
  assert.equal(predictedRegions(null, ["a"], 10, newId), null);
  assert.equal(predictedRegions({ label: "a" }, ["a"], 10, newId), null);
  const out = predictedRegions({ regions: [
    { label: "a", start: -1, end: 2.00049, text: "hi" }, { label: "zzz", start: 8, end: 12 },
    { label: "a", start: 3, end: 3 }, { label: "a", start: NaN, end: 4 },
  ] }, ["a"], 10, newId);
  assert.deepEqual(out, [
    { id: "r1", label: "a", start: 0, end: 2, text: "hi", predicted: true },
    { id: "r2", label: null, start: 8, end: 10, text: "", predicted: true },
  ]);
});

test("the result: ordered regions rounded and clipped, trimmed transcripts, the clip label", () => {
  const ordered = [{ label: "a", start: -0.1, end: 1.23456, text: "  yes " }, { label: "b", start: 2, end: 12, text: "" }];
  assert.equal(firstUnlabeled(ordered), -1);
  assert.equal(firstUnlabeled([...ordered, { label: null }]), 2);
  assert.deepEqual(regionsResult(ordered, 10, null), { regions: [
    { label: "a", start: 0, end: 1.235, text: "yes" }, { label: "b", start: 2, end: 10 },
  ] });
  assert.deepEqual(regionsResult([], 0, "a"), { regions: [], label: "a" });
});

test("the prediction's sentence", () => {
  assert.equal(describePrediction(null, true), null);
  assert.equal(describePrediction({}, true), null);
  assert.equal(describePrediction({ regions: [{}, {}], label: "dog", confidence: 0.914 }, true),
    "Model suggests 2 regions and clip label “dog” (91%): check, correct, then press Enter.");
  assert.equal(describePrediction({ regions: [{}], label: "dog" }, false),
    "Model suggests “dog”: check, correct, then press Enter.");
});
