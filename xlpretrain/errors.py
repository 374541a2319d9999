"""The one exception type for mistakes a user can fix."""


class UserError(Exception):
    """A bad config, bad data or wrong workdir.

    The message is one line that names the fix; the command line prints it without a traceback.
    """
