"""Azure resource names that obey each service's rules and include the stack, so stacks never collide.

Globally unique names (storage, ACR, Batch) get a short hash of prefix+stack+kind: stable across
runs (no random suffix to drift), different between stacks and projects that pick the same prefix.
"""

from __future__ import annotations

import hashlib
import re


def _alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def compact_name(prefix: str, stack: str, kind: str, max_length: int) -> str:
    """Lowercase letters and digits only (storage accounts: 3-24, Batch: 3-24, ACR: 5-50)."""
    digest = hashlib.sha256(f"{prefix}/{stack}/{kind}".encode()).hexdigest()[:6]
    stem = _alnum(f"{prefix}{stack}{kind}")[: max_length - len(digest)]
    return f"{stem}{digest}"


def dashed_name(prefix: str, stack: str, kind: str, max_length: int = 63) -> str:
    """Letters, digits and '-' (resource groups, Event Hubs, jobs, identities, container groups)."""
    name = re.sub(r"[^a-z0-9-]", "-", f"{prefix}-{stack}-{kind}".lower())
    return re.sub(r"-+", "-", name)[:max_length].strip("-")
