"""Independent random streams named by their parts: a run is a function of its seed, whatever restarts it."""

import hashlib


def seed_of(*parts) -> int:
    """A 63-bit seed from named parts, e.g. ("order", seed, epoch): independent streams, no clashes."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
