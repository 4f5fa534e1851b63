"""``UserError``: a mistake in the input (settings, folders, files) whose message names the fix.

``train.py`` prints these as one line and exits non-zero, without a traceback
(``--debug`` or ``TEXTREFINER_DEBUG=1`` shows it). Anything else is a bug and keeps
its traceback.
"""


class UserError(RuntimeError):
    """Raised for input the user can fix; the message says how."""


class SettingError(UserError, ValueError):
    """A setting that cannot work with this model or data (a prompt deeper than the CLIP, a
    weighting that gives every epoch weight 0, a file that does not fit); the message names the
    key and the fix. Also a ValueError, for code that checks arguments."""


class WeightsNotFoundError(FileNotFoundError):
    """CLIP weights (or a PromptKD teacher) are not where the config says; the message names the file
    and where to put it. A FileNotFoundError, not a UserError, so code that catches missing files
    catches it; ``train.py`` prints it as one line all the same."""
