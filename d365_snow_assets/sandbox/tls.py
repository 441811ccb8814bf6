"""A throwaway certificate authority and a loopback server certificate for the sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class TlsFiles:
    ca_pem: Path
    cert_chain_pem: Path
    key_pem: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Create a CA and a server certificate for ``localhost`` / ``127.0.0.1`` / ``::1`` in ``directory``.

    Clients trust ``ca.pem`` only (``D365SNOW_CA_BUNDLE``); verification stays on everywhere.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="d365-snow sandbox CA")
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    files = TlsFiles(directory / "ca.pem", directory / "server-chain.pem", directory / "server-key.pem")
    ca.cert_pem.write_to_path(str(files.ca_pem))
    cert.private_key_pem.write_to_path(str(files.key_pem))
    with files.cert_chain_pem.open("wb") as fh:
        for blob in cert.cert_chain_pems:
            fh.write(blob.bytes())
    files.key_pem.chmod(0o600)
    return files
