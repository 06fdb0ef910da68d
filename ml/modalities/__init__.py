"""Per-modality loaders: untrusted bytes -> validated, fixed-shape float32 arrays.

- :mod:`ml.modalities.image`: PNG/JPEG/WEBP/BMP -> ``(3, size, size)`` (numpy + Pillow only).
- :mod:`ml.modalities.audio`: WAV/FLAC/OGG -> log-mel ``(1, 64, T)`` (librosa imported lazily).
- :mod:`ml.modalities.pointcloud`: PLY/PCD/XYZ -> ``(n_points, 3)`` (open3d imported lazily).

Importing this package imports none of the submodules.
"""

MODALITIES = ("image", "audio", "pointcloud")
