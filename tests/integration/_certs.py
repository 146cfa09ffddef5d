"""Throwaway certificate authorities and certificates for the secured-link tests, by `openssl`.

EC P-256 keys, valid for two days; `openssl req -nodes` writes unencrypted PKCS#8 keys, which
both redis-server and Kafka's PEM key store read.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

__all__ = ["OPENSSL", "make_ca", "make_leaf"]

OPENSSL = shutil.which("openssl")
SERVER_EXT = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(
        [str(OPENSSL), *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=30
    )


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA in `d`: (certificate, key)."""
    key, cert = d / f"{name}.key", d / f"{name}.crt"
    _openssl(
        "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}", cwd=d,
    )  # fmt: skip
    return cert, key


def make_leaf(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    """A certificate signed by `ca` with the extensions `ext` (openssl extfile lines)."""
    key, csr, cert, extfile = (d / f"{name}.{x}" for x in ("key", "csr", "crt", "ext"))
    extfile.write_text(ext + "\n")
    _openssl(
        "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}", cwd=d,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", extfile, cwd=d,
    )  # fmt: skip
    return cert, key
