"""Typed domain errors and the one list of error codes.

Every error the API answers with has the shape ``{"error": {"code", "message", "details"}}`` (the one handler,
:mod:`apps.core.exceptions`, writes it). ``code`` is a member of :class:`ErrorCode`; the HTTP status is fixed by
the error's class (``NotFound`` 404, ``Conflict`` 409, ...), never chosen where it is raised. ``ml`` cannot import
the apps, so it keeps its codes as strings (``ml.errors``); they are listed here too, and
``tests/apps/core/test_error_codes.py`` keeps the two in step and checks that every code is described in the
OpenAPI schema (``apps.core.schema``) and raised somewhere.
"""
from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every ``error.code`` the API can answer with. A member equals its string (``ErrorCode.NOT_FOUND ==
    "not_found"``) and serialises as it; ``ErrorCode("no_such_code")`` is a ValueError. Each member carries a
    one-line ``description``: the code table of the OpenAPI schema's ``Error`` component."""

    def __new__(cls, value: str, description: str):
        member = str.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    # -- the handler and the framework: malformed or refused requests -------------------------------------------
    BAD_REQUEST = "bad_request", "The request cannot be served as sent (a bad header, a malformed request line)."
    MALFORMED_REQUEST = "malformed_request", "The body does not parse as the declared content type (e.g. invalid JSON)."
    VALIDATION_ERROR = "validation_error", "The body or a parameter fails the input schema; details name the fields."
    INVALID = "invalid", "The input is invalid for this operation (no more specific code applies)."
    AUTHENTICATION_FAILED = "authentication_failed", "Wrong credentials: an unknown, revoked or malformed token."
    TOKEN_EXPIRED = "token_expired", "The API token is past its expiry; ask for a new one."
    NOT_AUTHENTICATED = "not_authenticated", "No credentials were sent; send 'Authorization: Token <key>'."
    PERMISSION_DENIED = "permission_denied", "The caller's role in the project is too low for this operation."
    NOT_FOUND = "not_found", "No such object, or it lies in a project the caller is not a member of."
    METHOD_NOT_ALLOWED = "method_not_allowed", "The path does not accept this HTTP method."
    NOT_ACCEPTABLE = "not_acceptable", "No representation matches the Accept header."
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", "The operation does not read bodies of this content type."
    PAYLOAD_TOO_LARGE = "payload_too_large", "The request body is larger than LOOPLAB_MAX_REQUEST_BYTES."
    THROTTLED = "throttled", "Too many requests; retry after the Retry-After header's seconds."
    CONFLICT = "conflict", "The request conflicts with the current state of the object."
    ERROR = "error", "A request error with no more specific code."
    SERVER_ERROR = "server_error", "An unexpected error on the server (a bug); the request may be retried."
    QUERY_TIMEOUT = "query_timeout", "A database query ran past the time limit; narrow the request or retry."

    # -- request parameters and shared plumbing --------------------------------------------------------------------
    INVALID_BODY = "invalid_body", "The body is not what the operation reads (e.g. no samples list, no file part)."
    READ_ONLY_FIELDS = "read_only_fields", "The body tries to change fields that cannot be changed."
    INVALID_FILTER = "invalid_filter", "A query filter has a bad value (not true/false, not an id, bad metadata)."
    UNKNOWN_FILTER_OPERATOR = "unknown_filter_operator", "A metadata filter names an operator that does not exist."
    INVALID_LIMIT = "invalid_limit", "The limit parameter is not an integer in the allowed range."
    INVALID_K = "invalid_k", "The k parameter (number of neighbours) is not an integer."
    IDEMPOTENCY_KEY_INVALID = "idempotency_key_invalid", "The Idempotency-Key header is longer than 255 characters."
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused", "The Idempotency-Key was already used with another body."
    JOB_FINISHED = "job_finished", "The job has already ended; there is nothing to cancel."

    # -- accounts and projects ---------------------------------------------------------------------------------------
    INVALID_ROLE = "invalid_role", "The role is not one of the known roles."
    INVALID_EXPIRY = "invalid_expiry", "A token's expiry must lie in the future."
    INVALID_LABELS = "invalid_labels", "labels must be a non-empty list of unique 1-100 character strings."
    INVALID_MODALITY = "invalid_modality", "The modality is not one of image, audio, pointcloud."
    INVALID_TASK_TYPE = "invalid_task_type", "The task type is not supported for the project's modality."
    INVALID_SPLIT_RATIOS = "invalid_split_ratios", "split_ratios must be train/val/test fractions, sum 1, train > 0."
    INVALID_ANNOTATIONS_PER_TASK = "invalid_annotations_per_task", "annotations_per_task must be within 1..10."
    INVALID_THRESHOLD = "invalid_threshold", "confidence_threshold must be within 0..1."
    INVALID_DRIFT_SCHEDULE = "invalid_drift_schedule", "drift_check_hours is out of range."
    INVALID_WEBHOOK_URL = "invalid_webhook_url", "drift_webhook_url is not an http(s) URL of at most 500 characters."
    NO_WEBHOOK = "no_webhook", "There is no alert webhook to rotate the secret of; set drift_webhook_url first."
    LAST_ADMIN = "last_admin", "The project's last admin cannot leave or lose the admin role."
    MEMBER_NOT_FOUND = "member_not_found", "The user is not a member of this project."
    USER_NOT_FOUND = "user_not_found", "No user with this username."

    # -- samples: push, content, views of the content ----------------------------------------------------------------
    INVALID_SAMPLES = "invalid_samples", "Some pushed samples are invalid (none stored); details.errors lists them."
    INVALID_ITEM = "invalid_item", "(in details.errors of invalid_samples) An item is not a well-formed sample."
    EMPTY_BATCH = "empty_batch", "The push holds no samples."
    BATCH_TOO_LARGE = "batch_too_large", "The push holds more samples than one request may."
    CONTENT_OR_URI = "content_or_uri", "A pushed sample needs exactly one of content (base64) or uri."
    EXTERNAL_ID_TOO_LONG = "external_id_too_long", "external_id is longer than the server stores."
    INVALID_TEXT = "invalid_text", "A text field holds characters the database cannot store (NUL, unpaired surrogates)."
    INVALID_METADATA = "invalid_metadata", "metadata must be a JSON object."
    INVALID_URI = "invalid_uri", "uri must be an absolute URI of at most 2000 characters."
    URI_NOT_ALLOWED = "uri_not_allowed", "A file:// URI outside LOOPLAB_URI_ROOTS."
    CONTENT_UNAVAILABLE = "content_unavailable", "The sample's bytes are unreachable (a reference URI, a lost file)."
    NOT_EMBEDDED = "not_embedded", "The sample has no embedding yet; try again shortly."
    NOT_AUDIO = "not_audio", "Peaks and spectrograms exist only for audio samples."
    NOT_A_POINT_CLOUD = "not_a_point_cloud", "Points exist only for point-cloud samples."
    AUDIO_UNREADABLE = "audio_unreadable", "The sample's audio cannot be decoded."
    AUDIO_EMPTY = "audio_empty", "The sample's audio has no samples."
    INVALID_ENCODING = "invalid_encoding", "The encoding parameter is not json or int16."
    INVALID_BUCKETS = "invalid_buckets", "The buckets parameter is not an integer in the allowed range."
    INVALID_WIDTH = "invalid_width", "The width parameter is not an integer in the allowed range."
    INVALID_N_MELS = "invalid_n_mels", "The n_mels parameter is not an integer in the allowed range."

    # -- labeling: rounds, tasks, annotations, review ----------------------------------------------------------------
    INVALID_STRATEGY = "invalid_strategy", "The selection strategy is not known."
    INVALID_BUDGET = "invalid_budget", "budget must be a positive integer."
    BUDGET_EXCEEDED = "budget_exceeded", "The round asks for more labels than the project's budget has left."
    MODEL_REQUIRED = "model_required", "The strategy or constraint needs a deployed model, and none is deployed yet."
    TASK_DONE = "task_done", "The task is already done."
    TASK_TAKEN = "task_taken", "Another annotator holds the task now; nothing was stored."
    NOT_LEASED = "not_leased", "The caller does not hold the lease on this task; claim it with tasks/next."
    INVALID_ACTIVE_SECONDS = "invalid_active_seconds", "active_seconds must be within 0..86400."
    INVALID_RESULT = "invalid_result", "The result does not match the task type's shape; details.path says where."
    INVALID_LABEL = "invalid_label", "The result names a label (or label index) that is not the project's."
    UNSUPPORTED_TASK_TYPE = "unsupported_task_type", "The operation does not support the project's task type."
    INVALID_REVIEW_STATUS = "invalid_review_status", "The review_status filter names an unknown status."
    INVALID_ACTION = "invalid_action", "The review action is not one of the known actions."
    INVALID_COMMENT = "invalid_comment", "The review comment is too long."
    COMMENT_REQUIRED = "comment_required", "A rejection needs a comment."
    RESULT_REQUIRED = "result_required", "A correction needs the corrected result."
    UNEXPECTED_RESULT = "unexpected_result", "A result is only accepted with the correct action."
    NOT_ENOUGH_LABELS = "not_enough_labels", "Too few labeled samples for training or a label check."

    # -- training, serving, drift ------------------------------------------------------------------------------------
    MODEL_NOT_IN_PROJECT = "model_not_in_project", "The model belongs to another project."
    UNKNOWN_LEARNER = "unknown_learner", "No learner of that name is registered for the project's modality and task type."
    INVALID_PREANNOTATION = "invalid_preannotation", "A stored prediction cannot be compared with the annotation."
    INVALID_TARGET = "invalid_target", "Crops go to another classification project of the same modality."
    INVALID_SOURCE = "invalid_source", "Crops come from 'labels' or 'predictions', with min_score and padding in 0..1."
    DATASET_CHANGED = "dataset_changed", "A label of the run's frozen dataset version changed since; train again."
    INVALID_PARAMS = "invalid_params", "The learner does not take a parameter the run names."
    INVALID_WEIGHTS = "invalid_weights", "Training weights are invalid: unknown class, bad slice rule or weight."
    MODEL_NOT_READY = "model_not_ready", "The model has no ONNX export yet; wait for its training run to finish."
    NO_DEPLOYMENT = "no_deployment", "No model is deployed for this project yet."
    INVALID_MODEL = "invalid_model", "No such model in this project."
    INVALID_BASE64 = "invalid_base64", "content is not valid base64."
    INVALID_WINDOW = "invalid_window", "The drift window is invalid (window_hours and since both, or out of range)."
    NOT_ENOUGH_SAMPLES = "not_enough_samples", "Too few production samples in the window for a drift check."
    WINDOW_TOO_SMALL = "window_too_small", "Too few readable samples in a window to compare."
    CHECK_NOT_READY = "check_not_ready", "The drift check has not finished; nothing to send yet."

    # -- bring your own model: an uploaded ONNX file and its manifest (ml.learners.upload's checks) ----------------
    ONNX_TOO_LARGE = "onnx_too_large", "The uploaded ONNX file is larger than LOOPLAB_MAX_MODEL_UPLOAD_BYTES (413)."
    ONNX_INVALID = "onnx_invalid", "The upload is not a parseable ONNX model, or onnx.checker refuses it."
    ONNX_EXTERNAL_DATA = "onnx_external_data", "A tensor of the ONNX file keeps its data in an external file (refused)."
    ONNX_OPSET = "onnx_opset", "The ONNX file imports an opset (or custom domain) outside the allowed ones."
    ONNX_MANIFEST = "onnx_manifest", "The model's manifest is not valid for the project; details.path says where."
    ONNX_IO_MISMATCH = "onnx_io_mismatch", "The graph's inputs/outputs are not what the task type's runner feeds and reads."
    ONNX_INFERENCE_FAILED = "onnx_inference_failed", "The test inference on the project's samples failed or gave bad values."

    # -- exports -----------------------------------------------------------------------------------------------------
    INVALID_FORMAT = "invalid_format", "The export format is not one the project's task type exports as."
    REVIEWED_ONLY_UNSUPPORTED = "reviewed_only_unsupported", "reviewed_only applies to shape exports only."
    EXPORT_NOT_READY = "export_not_ready", "The export has not finished; nothing to download yet."

    # -- the ML core (ml.errors and the codes its raise sites give) --------------------------------------------------
    ML_ERROR = "ml_error", "The ML core refused the input (no more specific code applies)."
    INVALID_INPUT = "invalid_input", "The ML core cannot use the input (bad shape, bad value, bad file)."
    UNSUPPORTED_FORMAT = "unsupported_format", "The content's format is not accepted (detected by content, not name)."
    CORRUPT_DATA = "corrupt_data", "The content claims a supported format but is truncated or undecodable."
    TOO_LARGE = "too_large", "The content is over the server's caps (pixels, audio length, points)."
    EMPTY_DATA = "empty_data", "Nothing usable inside: an empty cloud or audio, NaN values, an empty window."
    MISSING_DEPENDENCY = "missing_dependency", "An optional package is not installed; details.install says how."
    UNSUPPORTED_MODALITY = "unsupported_modality", "The modality (or modality and task) is not known to the ML core."
    UNSUPPORTED_TASK = "unsupported_task", "The task is not implemented for this modality."
    INVALID_CONSTRAINTS = "invalid_constraints", "A round's batch constraints are invalid; details.field names which."
    UNKNOWN_STRATEGY = "unknown_strategy", "The selection strategy is not registered."
    UNKNOWN_OPTION = "unknown_option", "A selection option is not known to the strategy."
    INVALID_PROBS = "invalid_probs", "Scores are not probabilities (non-negative rows that sum to 1)."
    BAD_SHAPE = "bad_shape", "An input array has the wrong shape for the model."
    BAD_DTYPE = "bad_dtype", "An input array is not real numbers."
    BAD_LABELS = "bad_labels", "Class labels are not integer indices within the number of classes."
    BAD_WEIGHTS = "bad_weights", "Sample weights are not finite, non-negative and not all zero."
    BAD_DEVICE = "bad_device", "The requested device (e.g. a CUDA GPU) is not available."
    TOO_FEW_SAMPLES = "too_few_samples", "Too few training samples."
    BAD_MODEL = "bad_model", "The ONNX model lacks the expected input and outputs."
    CORRUPT_MODEL = "corrupt_model", "A model file cannot be loaded."
    UNSUPPORTED_MODEL_FORMAT = "unsupported_model_format", "A model file is in an unsupported format."
    SHAPE_MISMATCH = "shape_mismatch", "Model outputs to compare differ in shape."
    DUPLICATE_ID = "duplicate_id", "An index already holds a vector under this id."
    RULE_ERROR = "rule_error", "A relabeling rule raised an error."
    INVALID_RULE_OUTPUT = "invalid_rule_output", "A relabeling rule returned something that is not one of the labels."


class DomainError(Exception):
    """An expected refusal: the handler answers it with ``status_code`` and ``code`` in the error shape.

    Raise the subclass whose status fits (a subclass per status, as Zulip's JsonableError); give a more specific
    ``code`` (an :class:`ErrorCode`) where it helps a client. The status is the class's, never the raise site's.
    """

    status_code = 400
    code: ErrorCode = ErrorCode.BAD_REQUEST

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            cls.code = ErrorCode(cls.code)  # an unknown class-level code fails when the class is defined

    def __init__(self, message: str, *, code: ErrorCode | None = None, details: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = ErrorCode(code)  # ValueError for a code that is not in ErrorCode
        self.details = details or {}


class BadRequest(DomainError):
    """400: the request itself cannot be served (e.g. a bad header)."""

    status_code = 400
    code = ErrorCode.BAD_REQUEST


class ValidationFailed(DomainError):
    """422: the input is well-formed but not acceptable."""

    status_code = 422
    code = ErrorCode.INVALID


class NotFound(DomainError):
    status_code = 404
    code = ErrorCode.NOT_FOUND


class Forbidden(DomainError):
    status_code = 403
    code = ErrorCode.PERMISSION_DENIED


class Conflict(DomainError):
    """409: the request conflicts with the state of the object (already ended, not ready, taken)."""

    status_code = 409
    code = ErrorCode.CONFLICT


class NotApplicable(Conflict):
    """409: the operation does not apply to this kind of object (e.g. audio peaks of a point-cloud sample)."""


class PayloadTooLarge(DomainError):
    status_code = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE
