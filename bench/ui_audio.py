"""Audio tool on a one-hour file: server peaks (cold and cached) and, in headless Chromium, the time from
navigation to the waveform drawn (target < 1 s), plus responsiveness (create a region, zoom).

    .venv/bin/python bench/ui_audio.py [--minutes 60] [--repeat 2]

The WAV (16 kHz mono, 16-bit, ~115 MB for an hour) is generated deterministically into a temp dir, never
into git: espeak-ng digit words with silences, tiled, plus low noise (fixtures.speech_clips.write_long_wav).
It is ingested through the services as a file:// URI (pushing content is limited to short clips: ingest
validates audio up to 30 s). The app runs as gunicorn on the embedded default (SQLite) in a temp data dir.
Chromium is Debian's, headless, software-rendered (SwiftShader): browser numbers are for that setup.
Writes bench/out/ui_audio.json.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.browser import launch, login, new_page  # noqa: E402
from bench.report import OUT_DIR, median, print_table, write_report  # noqa: E402
from bench.stack import GunicornConfig, Stack  # noqa: E402


SETUP = """
from apps.accounts.services import user_create
from apps.labeling.models import Task
from apps.labeling.services import round_create
from apps.projects.services import membership_set, project_create
from apps.samples.services import IngestItem, samples_ingest
from django.utils import timezone

lead = user_create(username="lead", password="pw-lead", role="lead")
annotator = user_create(username="annotator", password="pw-annotator", role="annotator")
project = project_create(user=lead, name="One hour of digits", modality="audio", task_type="audio_regions",
                         labels=["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
                         label_budget=10)
membership_set(project=project, user=annotator, role="annotator")
[row] = samples_ingest(project=project, items=[IngestItem(external_id="hour", uri=params["uri"])])
rnd = round_create(project=project, user=lead, budget=1)
rnd.refresh_from_db()
how = "round"
if not Task.objects.filter(sample_id=row["id"]).exists():
    # Rounds embed samples with the model features, which read clips of at most 30 s: an hour-long
    # sample is left out as unreadable, so its task is created directly.
    Task.objects.create(project=project, sample_id=row["id"], available_at=timezone.now(), priority=1.0)
    how = "direct (round left the hour out: %s)" % (rnd.details or {}).get("unreadable")
result = {"project": project.id, "sample": row["id"], "task_created": how}
"""

SERVICE_TIMES = """
import time
from django.core.files.storage import default_storage
from apps.samples.models import Sample
from apps.samples.peaks import sample_peaks, sample_spectrogram, _cache_base

sample = Sample.objects.get(pk=params["sample"])
out = {}
for buckets in (8192, 1 << 19):
    t = time.perf_counter(); cold = sample_peaks(sample=sample, buckets=buckets); cold_s = time.perf_counter() - t
    t = time.perf_counter(); warm = sample_peaks(sample=sample, buckets=buckets); warm_s = time.perf_counter() - t
    assert warm.cached and not cold.cached
    out[f"peaks_{buckets}"] = {"cold_s": cold_s, "cached_s": warm_s, "buckets": cold.buckets,
                               "samples_per_bucket": cold.samples_per_bucket, "frames": cold.frames}
t = time.perf_counter(); spec = sample_spectrogram(sample=sample, width=2048); cold_s = time.perf_counter() - t
t = time.perf_counter(); sample_spectrogram(sample=sample, width=2048); warm_s = time.perf_counter() - t
out["spectrogram_2048"] = {"cold_s": cold_s, "cached_s": warm_s, "columns": int(spec.db.shape[1])}
# Clear the caches so the browser's first open is cold too.
folder, prefix = _cache_base(sample).rsplit("/", 1)
for name in default_storage.listdir(folder)[1]:
    if name.startswith(prefix + ".peaks-") or name.startswith(prefix + ".spec-"):
        default_storage.delete(folder + "/" + name)
result = out
"""

STATE = "() => { const s = window.__looplab?.state; return s && s.status === 'ready' && s.timings && s.timings.drawnMs !== null; }"


def browser_run(base_url: str, project: int) -> dict:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = launch(p)
        context, page = new_page(browser, timeout_ms=60_000)
        login(page, base_url)
        opens = []
        for label in ("cold", "cached", "cached again"):
            started = time.perf_counter()
            page.goto(f"{base_url}/projects/{project}/annotate/")
            page.wait_for_function(STATE)
            wall = time.perf_counter() - started
            t = page.evaluate("() => ({...window.__looplab.state.timings, duration: window.__looplab.state.duration, "
                              "buckets: window.__looplab.state.peaks.buckets, spb: window.__looplab.state.peaks.samplesPerBucket, "
                              "cachedPeaks: window.__looplab.state.peaks.cached})")
            page.wait_for_function("() => window.__looplab.state.spectrogramReady", timeout=120_000)
            spec_ms = page.evaluate("() => performance.now()")
            opens.append({"open": label, "nav_to_drawn_ms": t["drawnMs"], "peaks_fetch_ms": t["peaksMs"],
                          "wall_goto_to_drawn_s": wall, "spectrogram_ready_ms": spec_ms, "buckets": t["buckets"],
                          "samples_per_bucket": t["spb"], "peaks_cached": t["cachedPeaks"], "duration_s": t["duration"]})
        out["opens"] = opens
        duration = opens[-1]["duration_s"]

        # Responsiveness at "fit" (one hour across the waveform): create a region by dragging.
        wave = page.locator("#waveform").bounding_box()
        y = wave["y"] + 60
        x0, x1 = wave["x"] + wave["width"] * 0.40, wave["x"] + wave["width"] * 0.43
        page.mouse.move(x0, y)
        page.mouse.down()
        page.mouse.move(x1, y, steps=4)
        started = time.perf_counter()
        page.mouse.up()
        page.wait_for_function("() => window.__looplab.state.regions.length === 1")
        out["create_region_ms"] = (time.perf_counter() - started) * 1000
        out["create_region_handler_ms"] = page.evaluate("() => window.__looplab.state.timings.lastRegionMs")
        page.keyboard.press("4")

        # Zoom steps with the keyboard: time from the key to the redraw (and to finer peaks when needed).
        zooms = []
        for _ in range(6):
            before = page.evaluate("() => window.__looplab.state.redraws")
            started = time.perf_counter()
            page.keyboard.press("+")
            page.wait_for_function(f"() => window.__looplab.state.redraws > {before}")
            zooms.append({"px_per_sec": page.evaluate("() => window.__looplab.state.zoom"),
                          "key_to_redraw_ms": (time.perf_counter() - started) * 1000,
                          "zoom_to_redraw_ms": page.evaluate("() => window.__looplab.state.timings.lastZoomMs")})
        out["zoom_steps"] = zooms
        # Deep zoom (200 px/s on an hour: a 720,000 px wide waveform): finer peaks are fetched.
        buckets_before = page.evaluate("() => window.__looplab.state.peaks.buckets")
        started = time.perf_counter()
        page.evaluate("() => window.__looplab.audio.setZoom(200)")
        page.wait_for_function(f"() => window.__looplab.state.peaks.buckets > {buckets_before}", timeout=120_000)
        out["deep_zoom"] = {"px_per_sec": 200, "to_finer_peaks_ms": (time.perf_counter() - started) * 1000,
                            "buckets": page.evaluate("() => window.__looplab.state.peaks.buckets"),
                            "samples_per_bucket": page.evaluate("() => window.__looplab.state.peaks.samplesPerBucket")}
        # Create a region while deep-zoomed, just after the first one.
        page.evaluate("() => window.__looplab.audio.wavesurfer.setScrollTime(window.__looplab.state.regions[0].end + 2)")
        page.wait_for_timeout(300)
        wave = page.locator("#waveform").bounding_box()
        page.mouse.move(wave["x"] + 300, y)
        page.mouse.down()
        page.mouse.move(wave["x"] + 420, y, steps=4)
        started = time.perf_counter()
        page.mouse.up()
        page.wait_for_function("() => window.__looplab.state.regions.length === 2")
        out["create_region_zoomed_ms"] = (time.perf_counter() - started) * 1000
        out["duration_s"] = duration
        browser.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    from fixtures.speech_clips import write_long_wav

    wav_dir = Path(tempfile.mkdtemp(prefix="looplab-ui-audio-"))
    try:
        started = time.perf_counter()
        facts = write_long_wav(wav_dir / "hour.wav", minutes=args.minutes)
        facts["bytes"] = (wav_dir / "hour.wav").stat().st_size
        facts["generate_s"] = time.perf_counter() - started
        print(f"generated {facts['bytes'] / 1e6:.0f} MB WAV ({args.minutes:g} min) in {facts['generate_s']:.1f} s")
        runs = []
        for run in range(args.repeat):
            with Stack("embedded", gunicorn=GunicornConfig(workers=2, threads=2), name="ui-audio",
                       extra_env={"LOOPLAB_URI_ROOTS": str(wav_dir)}) as stack:
                setup = stack.django(SETUP, uri=(wav_dir / "hour.wav").as_uri())
                service = stack.django(SERVICE_TIMES, sample=setup["sample"])
                browser = browser_run(stack.url(""), setup["project"])
                runs.append({"run": run + 1, "setup": setup, "service": service, "browser": browser})

        rows = []
        for r in runs:
            s, b = r["service"], r["browser"]
            rows.append([f"run {r['run']}", s["peaks_8192"]["cold_s"] * 1000, s["peaks_8192"]["cached_s"] * 1000,
                         s["peaks_524288"]["cold_s"] * 1000, s["peaks_524288"]["cached_s"] * 1000,
                         s["spectrogram_2048"]["cold_s"] * 1000, s["spectrogram_2048"]["cached_s"] * 1000])
        print_table(["", "peaks 8k cold ms", "cached ms", "peaks 512k cold ms", "cached ms", "spectrogram cold ms",
                     "cached ms"], rows, title=f"Server (service calls, {args.minutes:g} min, 16 kHz mono)")
        rows = []
        for r in runs:
            for o in r["browser"]["opens"]:
                rows.append([f"run {r['run']} {o['open']}", o["nav_to_drawn_ms"], o["peaks_fetch_ms"],
                             o["spectrogram_ready_ms"], f"{o['buckets']} x {o['samples_per_bucket']}"])
        print_table(["open", "navigation → waveform drawn ms", "peaks fetch ms", "→ spectrogram ms", "buckets x spb"],
                    rows, title="Browser (headless Chromium, SwiftShader): opening the one-hour file (target < 1000 ms)")
        rows = []
        for r in runs:
            b = r["browser"]
            z = b["zoom_steps"]
            rows.append([f"run {r['run']}", b["create_region_ms"], b["create_region_zoomed_ms"],
                         median(x["key_to_redraw_ms"] for x in z), max(x["key_to_redraw_ms"] for x in z),
                         b["deep_zoom"]["to_finer_peaks_ms"]])
        print_table(["", "create region ms (fit)", "create region ms (200 px/s)", "zoom key→redraw median ms",
                     "max ms", "deep zoom → finer peaks ms"], rows, title="Responsiveness (wall clock from the test driver)")
        opens = [o["nav_to_drawn_ms"] for r in runs for o in r["browser"]["opens"]]
        payload = {"wav": facts,
                   "browser": "Debian chromium, headless, SwiftShader", "server": "gunicorn -w 2 gthread, embedded SQLite",
                   "target_nav_to_drawn_ms": 1000, "max_nav_to_drawn_ms": max(opens), "runs": runs}
        path = write_report("ui_audio", payload, path=OUT_DIR / "ui_audio.json")
        print(f"\nwrote {path}")
        return 0
    finally:
        shutil.rmtree(wav_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
