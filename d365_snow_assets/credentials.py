"""The encrypted credential store (DESIGN.md §8): ``$D365SNOW_HOME/credentials.enc``, mode 0600.

Encryption is Fernet (AES-128-CBC + HMAC-SHA256, authenticated) from ``cryptography``. The key is
``D365SNOW_MASTER_KEY`` when set, otherwise the key file ``$D365SNOW_HOME/master.key`` (created with mode 0600 on
first use). ``D365SNOW_MASTER_KEY`` may be a Fernet key (``Fernet.generate_key()``) or any passphrase; a passphrase
is stretched with scrypt and a random salt kept in the store file, so equal passphrases give different keys.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .paths import write_private
from .redaction import register_secrets

if TYPE_CHECKING:
    from .settings import ConnectorSettings

STORE_FILE = "credentials.enc"
KEY_FILE = "master.key"
FORMAT = "d365snow-credentials"
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class CredentialStoreError(RuntimeError):
    """The store cannot be read or written; the message says what to do and never contains a secret."""


def _is_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32 and len(value.strip()) == 44
    except (binascii.Error, ValueError):
        return False


class CredentialStore:
    """Read and write the store of one connector home."""

    def __init__(self, home: Path, master_key: str | None = None) -> None:
        self.home = Path(home)
        self.path = self.home / STORE_FILE
        self.key_file = self.home / KEY_FILE
        self._master_key = master_key

    @classmethod
    def for_settings(cls, settings: ConnectorSettings) -> CredentialStore:
        return cls(settings.home, settings.secret("master_key"))

    @property
    def key_source(self) -> str:
        return "D365SNOW_MASTER_KEY" if self._master_key else str(self.key_file)

    def exists(self) -> bool:
        return self.path.exists()

    # -- keys ------------------------------------------------------------------------------------------------
    def _key_file_key(self, *, create: bool) -> bytes:
        if self.key_file.exists():
            return self.key_file.read_bytes().strip()
        if not create:
            raise CredentialStoreError(f"The credential store {self.path} exists but its key file {self.key_file} "
                                       f"is missing; set D365SNOW_MASTER_KEY to the key it was written with.")
        key = Fernet.generate_key()
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key

    @staticmethod
    def _fernet(secret: str | bytes, salt: bytes | None) -> Fernet:
        text = secret.decode() if isinstance(secret, bytes) else secret
        if _is_fernet_key(text):
            return Fernet(text.strip().encode())
        if salt is None:
            raise CredentialStoreError("internal: a passphrase key needs a salt")
        derived = Scrypt(salt=salt, length=32, **_SCRYPT).derive(text.encode())
        return Fernet(base64.urlsafe_b64encode(derived))

    def _current_secret(self, *, create: bool) -> str:
        return self._master_key if self._master_key else self._key_file_key(create=create).decode()

    # -- file format -----------------------------------------------------------------------------------------
    def _read_envelope(self) -> dict[str, Any]:
        try:
            envelope = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except orjson.JSONDecodeError:
            raise CredentialStoreError(f"The credential store {self.path} is damaged (not a store file); restore "
                                       f"it from a backup or delete it and run `d365-snow credentials set` "
                                       f"again.") from None
        if not isinstance(envelope, dict) or envelope.get("format") != FORMAT:
            raise CredentialStoreError(f"The credential store {self.path} is not a d365-snow credential store.")
        return envelope

    def _decrypt(self, envelope: dict[str, Any], secret: str) -> dict[str, str]:
        salt = base64.b64decode(envelope["salt"]) if envelope.get("salt") else None
        if salt is None and not _is_fernet_key(secret):
            raise InvalidToken
        values = orjson.loads(self._fernet(secret, salt).decrypt(envelope["data"].encode()))
        if not isinstance(values, dict):
            raise InvalidToken
        return {str(k): str(v) for k, v in values.items()}

    def _encrypt(self, values: dict[str, str], secret: str) -> bytes:
        salt = None if _is_fernet_key(secret) else secrets.token_bytes(16)
        token = self._fernet(secret, salt).encrypt(orjson.dumps(values))
        return orjson.dumps({"format": FORMAT, "version": 1, "kdf": None if salt is None else "scrypt",
                             "salt": base64.b64encode(salt).decode() if salt else None, "data": token.decode()})

    # -- public API ------------------------------------------------------------------------------------------
    def load(self) -> dict[str, str]:
        """The stored values ({} when there is no store). Raises a clear error for a wrong key."""
        envelope = self._read_envelope()
        if not envelope:
            return {}
        secret = self._current_secret(create=False)
        try:
            values = self._decrypt(envelope, secret)
        except (InvalidToken, KeyError, ValueError, binascii.Error):
            # A rotation interrupted between writing the store and the key file leaves the new key here.
            pending = self.key_file.with_suffix(".key.new")
            if not self._master_key and pending.exists():
                try:
                    values = self._decrypt(envelope, pending.read_text().strip())
                except (InvalidToken, KeyError, ValueError, binascii.Error):
                    values = None
                if values is not None:
                    os.replace(pending, self.key_file)
                    register_secrets(values.values())
                    return values
            raise CredentialStoreError(f"The credential store {self.path} could not be decrypted with the key from "
                                       f"{self.key_source}: the key is wrong or the file was altered.") from None
        register_secrets(values.values())
        return values

    def save(self, values: dict[str, str]) -> None:
        secret = self._current_secret(create=True)
        write_private(self.path, self._encrypt(values, secret))

    def set(self, name: str, value: str) -> None:
        values = self.load()
        values[name] = value
        self.save(values)

    def unset(self, name: str) -> bool:
        values = self.load()
        if name not in values:
            return False
        del values[name]
        self.save(values)
        return True

    def rotate(self, new_master_key: str | None = None) -> str:
        """Re-encrypt under a new key; returns where the new key lives.

        Without ``new_master_key`` a new key file is generated (only when the store uses the key file: a key from
        the environment cannot be replaced by this process). The key file is written last, after a copy at
        ``master.key.new``, so an interruption never leaves a store without its key.
        """
        values = self.load()
        if new_master_key is None:
            if self._master_key:
                raise CredentialStoreError("The store is keyed by D365SNOW_MASTER_KEY; give the new key with "
                                           "`d365-snow credentials rotate --new-key` and then update the variable.")
            new_key = Fernet.generate_key().decode()
            pending = self.key_file.with_suffix(".key.new")
            write_private(pending, new_key.encode())
            write_private(self.path, self._encrypt(values, new_key))
            os.replace(pending, self.key_file)
            return str(self.key_file)
        if not new_master_key.strip():
            raise CredentialStoreError("The new master key is empty.")
        register_secrets([new_master_key])
        write_private(self.path, self._encrypt(values, new_master_key))
        self._master_key = new_master_key
        return "D365SNOW_MASTER_KEY (update the variable to the new key)"
