"""Passwords, stored as argon2id hashes (argon2-cffi). The parameters are OWASP's recommended
minimum for argon2id (19 MiB, 2 passes, 1 lane: about 0.1 s here); a hash is a PHC string that
carries its own parameters, so stronger ones can be chosen later and old hashes still verify (and
are re-hashed at the next login). Hashing is CPU-bound, so it runs in a thread."""

from __future__ import annotations

import asyncio
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from godel_server.runtime.validation import Violations

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length; this bounds the work one request can ask for

_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def check_password(v: Violations, field: str, password: str) -> None:
    if len(password) < MIN_LENGTH:
        v.add(field, f"must be at least {MIN_LENGTH} characters")
    elif len(password) > MAX_LENGTH:
        v.add(field, f"must be at most {MAX_LENGTH} characters")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (an unknown user) the same work is done against a
    dummy hash, so the answer's timing does not tell which usernames exist."""
    return await asyncio.to_thread(
        _verify, password_hash or _dummy_hash(), password, password_hash is not None
    )


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


def _verify(password_hash: str, password: str, real: bool) -> bool:
    try:
        return _HASHER.verify(password_hash, password) and real
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return _HASHER.hash("not the password of any user")
