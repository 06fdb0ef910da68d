"""Signals the registry sends to apps above it (which it must not import).

``predictions_made``: the deployed model predicted a batch (:func:`apps.registry.runtime.predict_contents`);
sent with ``project``, ``model_id``, ``results`` (the prediction dicts, in order), ``latency_ms`` (per item) and
``sample_ids`` (or None). The serving app logs each prediction (PredictionLog), in the caller's transaction."""
from django.dispatch import Signal

predictions_made = Signal()
