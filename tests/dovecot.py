"""A private Dovecot on loopback for IMAP tests, a client to fill it, and a relay that cuts.

Dovecot runs from a world-readable temporary folder (its mail processes run as the ``dovecot``
user, which cannot enter pytest's private tmp folders). Mail goes in with IMAP APPEND, as a mail
client would put it there.
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import HELPDESK, free_port, wait_until

DOVECOT = Path("/usr/sbin/dovecot")
PASSWORD = "imap-test-password"

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = postdesk-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = {ssl}
{ssl_files}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_fsync = never
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
"""


def require_dovecot() -> None:
    """Skip the test when Dovecot is not installed; fail instead when CI is set."""
    if DOVECOT.exists():
        return
    reason = f"{DOVECOT} is missing: apt-get install dovecot-imapd to run the IMAP tests"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the IMAP tests must run)")
    pytest.skip(reason)


class Dovecot:
    """One private Dovecot: plain IMAP (with STARTTLS) on ``port``, implicit TLS on ``tls_port``."""

    user = HELPDESK
    password = PASSWORD

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="postdesk-dovecot-"))
        self.port = free_port()
        self.tls_port = free_port()
        self.config = self.root / "dovecot.conf"
        self._write_files()

    def _write_files(self) -> None:
        self.root.chmod(0o755)
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes"),
                *("-subj", "/CN=localhost", "-days", "1", "-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
        ssl_files = f"ssl_cert = <{cert}\nssl_key = <{key}"
        self.config.write_text(
            _CONFIG.format(
                root=self.root,
                port=self.port,
                tls_port=self.tls_port,
                ssl="yes",
                ssl_files=ssl_files,
            )
        )
        (self.root / "users").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        (self.root / "mail").mkdir()
        shutil.chown(self.root / "mail", "dovecot", "dovecot")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # Dovecot daemonizes; its children keep the output open, so send it to a file.
        with (self.root / "start.log").open("ab") as output:
            subprocess.run(
                [str(DOVECOT), "-c", str(self.config)],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
            )
        wait_until(self._accepting, timeout=20, what=f"dovecot on port {self.port}")

    def stop(self) -> None:
        """Stop the server gracefully (clients get BYE) and wait until its port is closed."""
        pid = self._master_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _alive(pid), timeout=20, what="dovecot to stop")
        wait_until(lambda: not self._accepting(), timeout=20, what="dovecot port to close")

    def cleanup(self) -> None:
        """Kill the server and its processes at once, and remove its folder."""
        pid = self._master_pid()
        if pid is not None:
            for process in [pid, *_children(pid)]:  # the master first, so it respawns none
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), timeout=20, what="dovecot to die")
        shutil.rmtree(self.root, ignore_errors=True)

    def _master_pid(self) -> int | None:
        pid_file = self.root / "run" / "master.pid"
        return int(pid_file.read_text()) if pid_file.exists() else None

    def _accepting(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def log(self) -> str:
        """What Dovecot logged."""
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def toml(self, name: str = "main", **keys: object) -> str:
        """An ``[[imap]]`` table for this server; ``keys`` override or add settings."""
        values: dict[str, object] = {
            "name": name,
            "host": "127.0.0.1",
            "port": self.port,
            "security": "none",
            "username": self.user,
            "password": self.password,
            "poll_seconds": 2,
            **keys,
        }
        lines = [f"{key} = {_toml_value(value)}" for key, value in values.items()]
        return "\n[[imap]]\n" + "\n".join(lines) + "\n"

    @contextlib.contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib IMAP client."""
        connection = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        try:
            connection.login(self.user, self.password)
            yield connection
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                connection.logout()

    def append(self, raw: bytes, folder: str = "INBOX", flags: str = "") -> int:
        """APPEND one message; returns its UID."""
        return self.append_many([raw], folder, flags)[0]

    def append_many(
        self, messages: list[bytes], folder: str = "INBOX", flags: str = "", connections: int = 1
    ) -> list[int]:
        """APPEND messages (creating the folder if needed); returns their UIDs in order.

        With several ``connections`` the messages go in concurrently, in chunks, so their UIDs
        ascend per chunk rather than overall.
        """
        if folder.upper() != "INBOX":
            with self.client() as connection:
                connection.create(_quote(folder))
        size = -(-len(messages) // connections) or 1
        chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
        with ThreadPoolExecutor(max_workers=connections) as pool:
            results = pool.map(lambda chunk: self._append_chunk(chunk, folder, flags), chunks)
            return [uid for chunk_uids in results for uid in chunk_uids]

    def _append_chunk(self, messages: list[bytes], folder: str, flags: str) -> list[int]:
        uids = []
        with self.client() as connection:
            for raw in messages:
                status, data = connection.append(
                    _quote(folder), f"({flags})" if flags else None, None, raw
                )
                assert status == "OK", data
                match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                assert match, data
                uids.append(int(match.group(1)))
        return uids

    def mark_seen(self, uid: int, folder: str = "INBOX") -> None:
        """Mark one message \\Seen, as a person reading it would."""
        with self.client() as connection:
            connection.select(_quote(folder))
            status, data = connection.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
            assert status == "OK", data

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """Every message's UID with its flags."""
        with self.client() as connection:
            status, data = connection.select(_quote(folder), readonly=True)
            if status != "OK":
                return {}
            status, data = connection.uid("FETCH", "1:*", "(FLAGS)")
            result: dict[int, set[str]] = {}
            for line in data:
                if isinstance(line, bytes) and (
                    m := re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)
                ):
                    result[int(m.group(1))] = set(m.group(2).decode().split())
                elif isinstance(line, bytes) and (
                    m := re.search(rb"FLAGS \(([^)]*)\) UID (\d+)", line)
                ):
                    result[int(m.group(2))] = set(m.group(1).decode().split())
            return result

    def count(self, folder: str = "INBOX") -> int:
        """How many messages ``folder`` holds (0 when it does not exist)."""
        return len(self.flags(folder))

    def uidvalidity(self, folder: str = "INBOX") -> int:
        """The folder's UIDVALIDITY."""
        with self.client() as connection:
            status, data = connection.status(_quote(folder), "(UIDVALIDITY)")
            assert status == "OK", data
            match = re.search(rb"UIDVALIDITY (\d+)", data[0] or b"")
            assert match, data
            return int(match.group(1))

    def expunge(self, uid: int, folder: str = "INBOX") -> None:
        """Delete one message for good, as another mail client would."""
        with self.client() as connection:
            connection.select(_quote(folder))
            assert connection.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")[0] == "OK"
            assert connection.uid("EXPUNGE", str(uid))[0] == "OK"

    def recreate_folder(self, folder: str) -> None:
        """Delete ``folder`` and create it again empty, which gives it a new UIDVALIDITY."""
        before = self.uidvalidity(folder)
        with self.client() as connection:
            assert connection.delete(_quote(folder))[0] == "OK"
            time.sleep(1.1)  # Dovecot derives UIDVALIDITY from the clock
            assert connection.create(_quote(folder))[0] == "OK"
        assert self.uidvalidity(folder) != before


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == parent:
                found.append(int(stat.parent.name))
    return found


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
