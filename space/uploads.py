"""Uploads, bounded where they enter. Gradio's upload route (/gradio_api/upload) stores files before any handler
sees them, so its limits are set here:

- a request may carry at most one upload's worth (MINIGPT_APP_MAX_UPLOAD_MB, per file and in total): a larger
  Content-Length is answered 413 before its body is read (the ASGI server cuts a body at its Content-Length, so
  the header is an honest bound; a request without one is refused);
- all uploads waiting in Gradio's folder, and those arriving, stay under MINIGPT_APP_MAX_UPLOADS_MB together
  (503 beyond it, until older ones go);
- an upload that no training took within UPLOAD_LIFETIME_SECONDS is deleted (a training copies its text into the
  app's own folder and deletes Gradio's copy at once: space/job_inputs.py), and so are the parts of uploads cut
  off half-way, which Gradio leaves behind.
The models' zips (space/run_files.py) are made in ZIPS_FOLDER inside the same folder, so that Gradio serves them
without a second copy; they are not uploads and do not count, and they go after the same lifetime.
"""

import logging
import os
import threading
import time
from pathlib import Path

from gradio.utils import get_upload_folder

from space.request_limit import refuse

logger = logging.getLogger("minigpt.app")

UPLOAD_LIFETIME_SECONDS = 300
SWEEP_SECONDS = 30
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the files of one request
ZIPS_FOLDER = "minigpt-zips"  # Gradio names its own folders by content hashes: no upload lands here


def zips_folder() -> Path:
    return Path(get_upload_folder()) / ZIPS_FOLDER


def uploads_on_disk(folder: Path) -> int:
    """Bytes the uploads in `folder` take on disk (blocks, not lengths: a flood of tiny files counts for what it
    costs); the zips' folder is not counted."""
    total = 0
    stack = [folder]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name == ZIPS_FOLDER and Path(entry.path).parent == folder:
                continue
            try:
                total += entry.stat(follow_symlinks=False).st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
            except OSError:
                pass
    return total


class UploadLimit:
    """ASGI middleware on Gradio's upload route: the per-request and the whole app's upload limits above."""

    def __init__(self, app, max_upload_bytes: int, budget_bytes: int):
        self.app = app
        self.max_request_bytes = max_upload_bytes + MULTIPART_OVERHEAD
        self.max_upload_mb = max_upload_bytes / 2**20
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._arriving = 0  # bytes of the uploads under way

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].rstrip("/").endswith("/upload"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"")
        if not length.isdigit():
            return await refuse(send, headers, 411, "upload_needs_length")
        length = int(length)
        if length > self.max_request_bytes:
            return await refuse(send, headers, 413, "upload_too_big", limit=self.max_upload_mb)
        with self._lock:
            room = self.budget_bytes - uploads_on_disk(Path(get_upload_folder())) - self._arriving
            if length > room:
                full = True
            else:
                full, self._arriving = False, self._arriving + length
        if full:
            return await refuse(send, headers, 503, "uploads_full", limit=self.budget_bytes / 2**20,
                                minutes=UPLOAD_LIFETIME_SECONDS // 60)
        try:
            await self.app(scope, receive, send)
        finally:
            with self._lock:
                self._arriving -= length


class UploadJanitor:
    """A thread that deletes what has been in Gradio's upload folder longer than `lifetime` seconds."""

    def __init__(self, lifetime: float = UPLOAD_LIFETIME_SECONDS, every: float = SWEEP_SECONDS):
        self.lifetime, self.every = lifetime, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="minigpt-upload-janitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sweep()

    def sweep(self) -> int:
        """Delete the files older than the lifetime, then the folders left empty; returns how many files went."""
        folder = Path(get_upload_folder())
        removed = 0
        for root, dirs, files in os.walk(folder, topdown=False):
            for name in files:
                path = Path(root) / name
                try:
                    if time.time() - path.lstat().st_mtime > self.lifetime:
                        path.unlink()
                        removed += 1
                except OSError:
                    pass
            for name in dirs:
                try:
                    (Path(root) / name).rmdir()  # only when empty
                except OSError:
                    pass
        if removed:
            logger.info("deleted %d uploads not used within %d s", removed, self.lifetime)
        return removed

    def close(self) -> None:
        self._stop.set()
