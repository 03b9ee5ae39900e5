"""Errors a user can act on: each message names the input and the reason."""


class RetrainError(Exception):
    """Base class for every error yolo-retrain raises on purpose."""


class InvalidInput(RetrainError):
    """An input (image, label file, data.yaml, setting) was refused; nothing stored was changed."""


class DuplicateCorrection(InvalidInput):
    """The same image with the same labels is already stored and not yet applied."""


class TransientError(RetrainError):
    """A fault that may pass by itself (a locked database, a restarting server): worth retrying."""


class TrackingSetupError(RetrainError):
    """MLflow is not set up as configured (missing experiment, artifact location mismatch, unreachable)."""
