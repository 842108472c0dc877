"""Chromium with its sandbox on, for both browsers of a crawl: screenshots (crawler/evidence/screenshot.py)
and the scrapy-playwright browser of ``render = true`` sources (spiders/base.py).

Chromium refuses its sandbox when started as root, so a root process starts it as the unprivileged
user ``nobody`` through a small generated ``setpriv`` wrapper. Where no sandbox can start at all (no
user namespaces) the callers fall back to ``--no-sandbox`` and log it; ``unsandboxed`` remembers why,
once per executable and process, so the next browser does not try again.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

SANDBOX_USER = "nobody"
# What the browser process inherits: nothing of the crawler's environment (database URLs, tokens).
BROWSER_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR", "FONTCONFIG_PATH", "FONTCONFIG_FILE")
PROBE_SECONDS = 30

unsandboxed: dict[str, str] = {}  # executable -> why its sandbox could not start
_proved: set[str] = set()  # executables whose sandbox came up in this process


def browser_env() -> dict[str, str]:
    return {key: os.environ[key] for key in ("HOME", *BROWSER_ENV_KEYS) if key in os.environ}


def write_sandbox_wrapper(executable: str, directory: str) -> str:
    """A launcher that starts ``executable`` as SANDBOX_USER, for a root process (chromium will not
    sandbox itself as root). It hands that user the profile directory Playwright created, and exec()s,
    so Playwright's pipes to the browser stay connected. It is read at every launch: keep ``directory``
    as long as a browser may be (re)started."""
    user = pwd.getpwnam(SANDBOX_USER)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise OSError("setpriv (util-linux) not found")
    ids = f"{user.pw_uid}:{user.pw_gid}"
    path = Path(directory) / "chromium"
    path.write_text(
        "#!/bin/sh\n"
        f"# written by xunjian: chromium as {SANDBOX_USER}, so that its sandbox can start\n"
        'for arg do case "$arg" in --user-data-dir=*) profile="${arg#--user-data-dir=}";; esac; done\n'
        f'[ -n "$profile" ] && chown -R {ids} "$profile" || exit 1\n'
        'export HOME="$profile"\n'
        f"exec {shlex.quote(setpriv)} --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups "
        f'{shlex.quote(executable)} "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o700)
    return str(path)


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def prepare_sandbox(executable: str) -> tuple[str, str | None] | None:
    """What to launch with ``chromium_sandbox=True`` — (launcher, wrapper directory to remove once no
    browser may start any more, None when not root) — after one headless start of it proved that the
    sandbox comes up (once per process); None when it does not (the reason is kept in ``unsandboxed``)."""
    if executable in unsandboxed:
        return None
    directory = tempfile.mkdtemp(prefix="xunjian-chromium-") if os.geteuid() == 0 else None
    try:
        launcher = write_sandbox_wrapper(executable, directory) if directory else executable
        if executable not in _proved:
            _probe(launcher)
            _proved.add(executable)
    except (OSError, KeyError, subprocess.SubprocessError) as error:
        if directory:
            shutil.rmtree(directory, ignore_errors=True)
        unsandboxed[executable] = first_line(error)
        return None
    return launcher, directory


def _probe(launcher: str) -> None:
    """Start the browser once, sandboxed and headless, on a blank page; raises OSError if it fails."""
    profile = tempfile.mkdtemp(prefix="xunjian-probe-")  # outside the wrapper's root-only directory
    try:
        done = subprocess.run(
            [launcher, "--headless", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
             "--dump-dom", "about:blank"],
            env=browser_env(), capture_output=True, text=True, errors="replace", timeout=PROBE_SECONDS,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if done.returncode != 0 or "<body>" not in done.stdout:
        lines = done.stderr.strip().splitlines()
        why = next((line for line in lines if "sandbox" in line.lower()), lines[-1] if lines else "")
        raise OSError(f"chromium exited with {done.returncode}: {why}".rstrip(": "))
