import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

HEAVY = ["torch", "faiss", "onnxruntime", "open3d", "librosa", "cleanlab", "django", "sklearn", "soundfile"]


def test_web_process_imports_stay_light():
    code = (
        "import sys, ml, ml.errors, ml.modalities, ml.modalities.image\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_heavy_modules_import_lazily():
    # audio/pointcloud/features modules may be imported without pulling librosa/open3d/torch
    code = (
        "import sys, importlib\n"
        "for name in ['ml.modalities.audio', 'ml.modalities.pointcloud', 'ml.features']:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError as e:\n"
        "        if e.name != name: raise\n"
        f"heavy = [m for m in {['torch', 'faiss', 'onnxruntime', 'open3d', 'librosa', 'cleanlab', 'django']!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
