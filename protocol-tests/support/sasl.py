"""SASL credentials for a server started with ``-S``, in each server's form.

ferrocache reads memcached's pwdb file (``user:password`` lines) named by
``MEMCACHED_SASL_PWDB``. Debian's memcached is built with Cyrus SASL but
without the pwdb option, so it gets the same user in a sasldb made with
``saslpasswd2`` (Debian package ``sasl2-bin``) and a ``memcached.conf``
offering only PLAIN, found through ``SASL_CONF_PATH``.

The user and password are the ones in Django's documentation of
``PyLibMCCache`` with SASL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

USER = "user"
PASSWORD = "pass"


@dataclass
class Credentials:
    directory: str

    @classmethod
    def create(cls) -> "Credentials":
        # memcached reads its SASL files after becoming nobody: everything is
        # world-readable, in a world-traversable directory.
        directory = tempfile.mkdtemp(prefix="cache-sasl-", dir="/tmp")
        os.chmod(directory, 0o755)
        creds = cls(directory)
        with open(creds.pwdb, "w") as f:
            f.write(f"{USER}:{PASSWORD}\n")
        saslpasswd2 = shutil.which("saslpasswd2") or "/usr/sbin/saslpasswd2"
        subprocess.run(
            [saslpasswd2, "-p", "-c", "-a", "memcached", "-f", creds.sasldb, USER],
            input=PASSWORD.encode(),
            check=True,
            timeout=30,
        )
        with open(os.path.join(directory, "memcached.conf"), "w") as f:
            f.write(f"mech_list: plain\nsasldb_path: {creds.sasldb}\n")
        for name in os.listdir(directory):
            os.chmod(os.path.join(directory, name), 0o644)
        return creds

    @property
    def pwdb(self) -> str:
        return os.path.join(self.directory, "pwdb")

    @property
    def sasldb(self) -> str:
        return os.path.join(self.directory, "sasldb2")

    def env(self, target: str) -> dict[str, str]:
        """What the server's process needs in its environment."""
        if target == "ferrocache":
            return {"MEMCACHED_SASL_PWDB": self.pwdb}
        return {"SASL_CONF_PATH": self.directory}

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
