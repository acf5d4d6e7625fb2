"""Files that hold secrets: private directories (0700) and files (0600).

The Raft log, its stable state and its snapshots carry every ACL secret, CA key and KV value in
plaintext; the data dir around them is the first line of defence. A directory that already
exists with wider permissions (made by an older version, or by hand) is tightened, with a
warning naming the old mode, because silently trusting it would leave secrets readable.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "ensure_private_dir"]

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600

_log = logging.getLogger("lictor.fs")


def ensure_private_dir(path: str | os.PathLike[str], *, log: logging.Logger | None = None) -> Path:
    """Create ``path`` (and missing parents) as 0700, or tighten an existing one to 0700."""
    p = Path(path)
    p.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    st = p.stat()
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        if st.st_uid != os.geteuid() or mode & stat.S_ISVTX:
            # a shared directory (/tmp, another user's): never change it, only say so
            (log or _log).warning("data directory %s has mode %s and is shared (sticky or not ours); "
                                  "use a directory of its own", p, oct(mode))
            return p
        (log or _log).warning("data directory %s had mode %s, readable by others; setting it to 0700",
                              p, oct(mode))
        os.chmod(p, PRIVATE_DIR_MODE)
    return p
