"""The exceptions FakeScope raises: one small hierarchy a caller can catch precisely."""

from __future__ import annotations


class FakeScopeError(Exception):
    """Base class of every error FakeScope raises on purpose."""


class ImageError(FakeScopeError):
    """The bytes given are not an image FakeScope will analyse."""


class EmptyImageError(ImageError):
    """Zero bytes were given."""


class UnsupportedFormatError(ImageError):
    """The bytes decode to a format outside the allow-list (or to no known format)."""


class UndecodableImageError(ImageError):
    """The format is allowed but the data is truncated or corrupt."""


class ImageTooLargeError(ImageError):
    """Too many bytes or too many pixels (a decompression bomb is one of these)."""


class ModelError(FakeScopeError):
    """The model could not be loaded or used."""


class ModelLoadError(ModelError):
    """A checkpoint could not be found, recognised or loaded."""


class LabelTokenError(ModelError):
    """A label word has no single-token form in the checkpoint's tokenizer."""


class QuantizationError(ModelError):
    """The quantization asked for is unknown or unavailable on this device."""


class DatasetError(FakeScopeError):
    """An evaluation dataset is missing files or has unknown labels."""


class CalibrationError(FakeScopeError):
    """A calibration file is unreadable or fitted for another model, or cannot be fitted."""


class Terminated(KeyboardInterrupt):
    """A `fakescope` command got SIGTERM (`kill`, a scheduler's time limit). Raised where the
    program is, as Ctrl-C raises KeyboardInterrupt, so that the same cleanup runs (a half-written
    output's temporary file is removed); the command then exits with status 143."""
