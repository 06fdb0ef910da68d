"""Waveform peaks and a spectrogram picture for an audio sample (the audio annotation tool draws from these).

GET /api/v1/samples/{id}/peaks/?buckets=N[&encoding=json|int16]  ("format" is DRF's renderer override)
  json (default): {"duration_s", "sample_rate", "channels", "frames", "samples_per_bucket", "buckets",
                   "format": "min_max_interleaved", "peaks": [min0, max0, min1, max1, ...], "cached"}
  int16: little-endian int16 min/max interleaved (value * 32767), the same numbers in X-Peaks-* headers.
GET /api/v1/samples/{id}/spectrogram.png?width=W[&n_mels=M]
  a PNG of M rows (high frequencies on top) and min(W, STFT frames) columns spanning X-Spectrogram-Span seconds.
Members of the sample's project only (non-members get 404); a non-audio sample is a 409 "not_audio".
"""
from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response

from ml.modalities.audio_view import spectrogram_png

from apps.projects.views import ProjectScopedView
from apps.core.errors import ErrorCode, ValidationFailed
from apps.samples import peaks as peaks_service
from apps.samples.selectors import sample_get

_IMMUTABLE = "private, max-age=86400"  # content-addressed: a sample's audio never changes


def _int_param(request, name: str, default: int, lo: int, hi: int, *, code: ErrorCode) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer.", code=code, details={name: raw})
    if not lo <= value <= hi:
        raise ValidationFailed(f"{name} must be within {lo}..{hi}; got {value}.", code=code,
                               details={name: value, "min": lo, "max": hi})
    return value


def _audio_sample(view, request, sample_id):
    sample = sample_get(sample_id=sample_id)
    view.check_object_project(request, sample)
    return sample


class SamplePeaks(ProjectScopedView):
    @extend_schema(
        parameters=[OpenApiParameter("buckets", int, description=f"at most this many min/max pairs (1..{peaks_service.MAX_BUCKETS}; "
                                                                  f"default {peaks_service.DEFAULT_BUCKETS})"),
                    OpenApiParameter("encoding", str, enum=["json", "int16"])],
        responses={200: OpenApiResponse(description="JSON peaks, or little-endian int16 with encoding=int16")},
        summary="Waveform peaks of an audio sample (min/max per bucket, computed on the server and cached)")
    def get(self, request, sample_id):
        sample = _audio_sample(self, request, sample_id)
        buckets = _int_param(request, "buckets", peaks_service.DEFAULT_BUCKETS, 1, peaks_service.MAX_BUCKETS,
                             code=ErrorCode.INVALID_BUCKETS)
        encoding = request.query_params.get("encoding", "json")
        if encoding not in ("json", "int16"):
            raise ValidationFailed("encoding must be json or int16.", code=ErrorCode.INVALID_ENCODING,
                                   details={"encoding": encoding})
        peaks = peaks_service.sample_peaks(sample=sample, buckets=buckets)  # 409 content_unavailable if unreadable
        meta = {"duration_s": peaks.duration_s, "sample_rate": peaks.sample_rate, "channels": peaks.channels,
                "frames": peaks.frames, "samples_per_bucket": peaks.samples_per_bucket, "buckets": peaks.buckets}
        if encoding == "int16":
            response = HttpResponse(peaks.to_int16(), content_type="application/octet-stream")
            headers = {"X-Peaks-Duration": repr(peaks.duration_s), "X-Peaks-Sample-Rate": str(peaks.sample_rate),
                       "X-Peaks-Channels": str(peaks.channels), "X-Peaks-Frames": str(peaks.frames),
                       "X-Peaks-Samples-Per-Bucket": str(peaks.samples_per_bucket),
                       "X-Peaks-Buckets": str(peaks.buckets), "X-Peaks-Cached": "true" if peaks.cached else "false"}
            for key, value in headers.items():
                response[key] = value
            response["Access-Control-Expose-Headers"] = ", ".join(headers)
        else:
            response = Response({**meta, "format": "min_max_interleaved", "cached": peaks.cached,
                                 "peaks": [round(v, 5) for v in peaks.interleaved().tolist()]})
        response["Cache-Control"] = _IMMUTABLE
        response["Server-Timing"] = f"peaks;dur={peaks.seconds * 1000:.1f}"
        return response


class SampleSpectrogram(ProjectScopedView):
    @extend_schema(
        parameters=[OpenApiParameter("width", int, description=f"at most this many time columns (16..{peaks_service.MAX_SPECTROGRAM_WIDTH})"),
                    OpenApiParameter("n_mels", int, description="mel bands (image rows), 16..256")],
        responses={(200, "image/png"): bytes},
        summary="Log-mel spectrogram of an audio sample as a PNG (computed on the server and cached)")
    def get(self, request, sample_id):
        sample = _audio_sample(self, request, sample_id)
        width = _int_param(request, "width", peaks_service.DEFAULT_SPECTROGRAM_WIDTH, 16,
                           peaks_service.MAX_SPECTROGRAM_WIDTH, code=ErrorCode.INVALID_WIDTH)
        n_mels = _int_param(request, "n_mels", peaks_service.N_MELS, 16, 256, code=ErrorCode.INVALID_N_MELS)
        spec = peaks_service.sample_spectrogram(sample=sample, width=width, n_mels=n_mels)
        response = HttpResponse(spectrogram_png(spec), content_type="image/png")
        headers = {"X-Spectrogram-Span": repr(spec.span_s), "X-Spectrogram-Duration": repr(spec.duration_s),
                   "X-Spectrogram-Hop": str(spec.hop), "X-Spectrogram-Nfft": str(spec.n_fft),
                   "X-Spectrogram-Cached": "true" if spec.cached else "false"}
        for key, value in headers.items():
            response[key] = value
        response["Access-Control-Expose-Headers"] = ", ".join(headers)
        response["Cache-Control"] = _IMMUTABLE
        response["Server-Timing"] = f"spectrogram;dur={spec.seconds * 1000:.1f}"
        return response
