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
