"""A real Label Studio on loopback for the tests: a migrated template data dir made once, a copy per test run.

Standard library only: ``make labelstudio`` runs it with Label Studio's own virtualenv's python
(``python tests/labelstudio_server.py template DIR``); the test fixture imports it.

Label Studio's first start migrates its SQLite database (minutes); a start on a migrated copy takes about one.
The template holds one user with a legacy API token enabled, so tests need no interactive sign-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-labelstudio"
TEMPLATE = ROOT / ".cache" / "labelstudio" / "template"
STAMP_NAME = ".migrated"
USERNAME = "reviewer@example.com"
PASSWORD = "yolo-retrain-test"
TOKEN = "0123456789abcdef0123456789abcdef01234567"  # the template user's legacy API token


@dataclass
class LabelStudio:
    """A running Label Studio: its URL, the user's API token, its process and log."""

    url: str
    token: str
    process: subprocess.Popen
    log: Path
    data_dir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own process group: the server and its children
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def installed() -> bool:
    return (VENV / "bin" / "label-studio").exists() and (TEMPLATE / STAMP_NAME).exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(data_dir: Path, port: int | None = None, timeout_s: float = 600, extra_env: dict[str, str] | None = None) -> LabelStudio:
    """Start Label Studio on 127.0.0.1 with ``data_dir`` (SQLite), the template user, legacy tokens on; wait until it answers."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}.log"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "DJANGO_DB": "sqlite",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        # The ML backend and the webhook receiver run on loopback beside it: Label Studio's SSRF guard would refuse them.
        "SSRF_PROTECTION_ENABLED": "false",
        "ML_BLOCK_LOCAL_IP": "false",
        # Webhooks are sent synchronously with a 1 s timeout by default; a shared CI machine can be slower.
        "WEBHOOK_TIMEOUT": "30",
        **(extra_env or {}),
    }
    for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):  # the tests' venv must not leak into Label Studio's
        env.pop(key, None)
    command = [
        str(VENV / "bin" / "label-studio"), "start", "--no-browser",
        "--data-dir", str(data_dir), "--internal-host", "127.0.0.1", "--port", str(port),
        "--username", USERNAME, "--password", PASSWORD, "--user-token", TOKEN, "--enable-legacy-api-token",
    ]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=data_dir, start_new_session=True)
    server = LabelStudio(f"http://127.0.0.1:{port}", TOKEN, process, log, data_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Label Studio exited with {process.returncode}; see {log}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"Label Studio did not answer on {server.url} within {timeout_s:.0f} s; see {log}:\n{_tail(log)}")


def start_copy(workdir: Path, **kwargs) -> LabelStudio:
    """Start Label Studio on a fresh copy of the migrated template."""
    data_dir = workdir / "label-studio"
    shutil.copytree(TEMPLATE, data_dir, ignore=shutil.ignore_patterns(STAMP_NAME, "*.log"))
    return start(data_dir, **kwargs)


def make_template(target: Path) -> None:
    """Migrate a data dir once (first start), stop, and mark it done."""
    if (target / STAMP_NAME).exists():
        return
    shutil.rmtree(target, ignore_errors=True)
    began = time.monotonic()
    server = start(target, timeout_s=1800)
    server.stop()
    (target / STAMP_NAME).write_text(f"migrated in {time.monotonic() - began:.0f} s\n")
    print(f"Label Studio template data dir ready at {target} ({time.monotonic() - began:.0f} s)")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "template":
        sys.exit("usage: labelstudio_server.py template DIR")
    make_template(Path(sys.argv[2]).resolve())
