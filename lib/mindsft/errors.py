"""The one exception type the command line turns into a single clear line, and the
one line an operating-system error becomes."""


class MindsftError(Exception):
    """Bad input or a failed precondition: the message names the file, the record or
    tensor, and what is wrong. `mindsft` prints it on one line and exits non-zero."""


def os_error_line(exc: OSError) -> str:
    """`PATH: reason` for an OSError (both paths of a failed rename or link)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    where = str(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    return f"{where}: {reason}"
