import re

_ID = re.compile(r"[0-9]{1,18}")


def is_id(value) -> bool:
    """True for a plain ASCII decimal id that fits a bigint ('²'.isdigit() is True, int('²') fails)."""
    return _ID.fullmatch(str(value)) is not None
