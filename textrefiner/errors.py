"""``UserError``: a mistake in the input (settings, folders, files) whose message names the fix.

``train.py`` prints these as one line and exits non-zero, without a traceback
(``--debug`` or ``TEXTREFINER_DEBUG=1`` shows it). Anything else is a bug and keeps
its traceback.
"""


class UserError(RuntimeError):
    """Raised for input the user can fix; the message says how."""
