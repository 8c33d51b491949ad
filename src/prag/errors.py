"""The errors prag raises for problems with a user's input or state, one type per way a caller must react.

The CLI prints any of them as one `error:` line (exit code 2); the HTTP server answers with the type's `status`.
Anything else that escapes is a bug.
"""


class PragError(Exception):
    """Bad input or state: a malformed file, an unknown setting, a missing knowledge base."""
    status = 400
    code = "invalid_request"


class NotFound(PragError):
    """The named thing (document, model, dataset, file) does not exist."""
    status = 404
    code = "not_found"


class Conflict(PragError):
    """The request clashes with what exists: a document id taken, a kb made with other settings."""
    status = 409
    code = "conflict"
