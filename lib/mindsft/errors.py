"""The one exception type the command line turns into a single clear line."""


class MindsftError(Exception):
    """Bad input or a failed precondition: the message names the file, the record or
    tensor, and what is wrong. `mindsft` prints it on one line and exits non-zero."""
