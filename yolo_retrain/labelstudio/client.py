"""What the backend reads from Label Studio: task images and the predictions an annotation started from.

Authentication: a legacy API token (``Authorization: Token <key>``) or a personal access token, which is a
JWT refresh token exchanged at ``/api/token/refresh`` for a short-lived access token (``Bearer``), renewed on 401.
Only file URLs on Label Studio itself are fetched (``/data/upload/...``, ``/data/local-files/?d=...``): a task's
data must not make the backend send the token, or any request, elsewhere, nor to Label Studio's API (the key
would read or change anything its user may). Cloud storage (``/tasks/<id>/presign/``) is not supported.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import httpx

from yolo_retrain.errors import InvalidInput, TransientError
from yolo_retrain.labels import IMAGE_SUFFIXES, MAX_IMAGE_BYTES, SIGNATURE_BYTES, image_format


class LabelStudioUnavailable(TransientError):
    """Label Studio did not answer, or answered with a server error: retry later."""


class LabelStudioClient:
    def __init__(self, url: str, api_key: str | None, timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"Label Studio URL {url!r}: expected http(s)://host:port")
        self.url = url.rstrip("/") + "/"
        self._key = api_key or None
        self._access: str | None = None
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    # Authentication ---------------------------------------------------------------------------
    @property
    def _personal_token(self) -> bool:
        """A personal access token is a JWT (three dot-separated parts); a legacy token is plain hex."""
        return self._key is not None and self._key.count(".") == 2

    def _auth(self, renew: bool = False) -> dict[str, str]:
        if self._key is None:
            return {}
        if not self._personal_token:
            return {"Authorization": f"Token {self._key}"}
        with self._lock:
            if self._access is None or renew:
                response = self._send("POST", "api/token/refresh/", json={"refresh": self._key}, auth={})
                if response.status_code != 200:
                    raise InvalidInput(
                        f"Label Studio at {self.url} refused the personal access token "
                        f"(HTTP {response.status_code}): check YOLO_RETRAIN_LABEL_STUDIO_API_KEY"
                    )
                self._access = response.json()["access"]
            return {"Authorization": f"Bearer {self._access}"}

    def _send(self, method: str, path: str, auth: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, urljoin(self.url, path), headers=self._auth() if auth is None else auth, **kwargs)
        except httpx.TransportError as exc:
            raise LabelStudioUnavailable(f"Label Studio at {self.url} unreachable ({exc})") from exc

    def _get(self, path: str, what: str, **kwargs: Any) -> httpx.Response:
        """GET with the token, renewing an expired access token once."""
        response = self._send("GET", path, **kwargs)
        if response.status_code == 401 and self._personal_token:
            response = self._send("GET", path, auth=self._auth(renew=True), **kwargs)
        _check(response, what)
        return response

    # Reads ------------------------------------------------------------------------------------
    def file_url(self, image_url: str) -> str:
        """The absolute URL of a task's image if it is a file Label Studio serves (``/data/...``); InvalidInput
        naming it otherwise, before any request is sent."""
        target = urljoin(self.url, image_url)
        ours, theirs = urlsplit(self.url), urlsplit(target)
        path = unquote(theirs.path)  # as Label Studio will read it: no ``..`` may hide behind %2e%2e or %2f
        segments = path.split("/")
        if (
            (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc)
            or not path.startswith(f"{ours.path}data/")
            or ".." in segments
            or "\\" in path
        ):
            raise InvalidInput(
                f"task image {image_url!r} is not a file Label Studio at {self.url} serves: only uploaded files "
                "and local storage (/data/upload/..., /data/local-files/?d=...) are fetched (cloud storage is not "
                "supported)"
            )
        return target

    def image(self, image_url: str) -> bytes:
        """The bytes of a task's image (at most MAX_IMAGE_BYTES), from Label Studio's own files only (``file_url``)."""
        target = self.file_url(image_url)
        what = f"task image {image_url}"
        for attempt in range(2):
            headers = self._auth(renew=attempt == 1)
            try:
                with self._http.stream("GET", target, headers=headers) as response:
                    if response.status_code == 401 and self._personal_token and attempt == 0:
                        continue
                    _check(response, what)
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:  # refused before reading it
                        raise InvalidInput(f"{what}: {declared} bytes, larger than {MAX_IMAGE_BYTES}")
                    chunks, size, sniffed = [], 0, False
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > MAX_IMAGE_BYTES:
                            raise InvalidInput(f"{what}: larger than {MAX_IMAGE_BYTES} bytes")
                        chunks.append(chunk)
                        if not sniffed and size >= SIGNATURE_BYTES:  # not an image: refused before the rest is read
                            sniffed = True
                            _check_format(b"".join(chunks), what)
                    data = b"".join(chunks)
                    _check_format(data, what)
                    return data
            except httpx.TransportError as exc:
                raise LabelStudioUnavailable(f"Label Studio at {self.url} unreachable ({exc})") from exc
        raise InvalidInput(f"{what}: Label Studio refused the API key")

    def prediction(self, prediction_id: int) -> dict[str, Any]:
        """One stored prediction (``result``, ``model_version``, ``score``)."""
        return self._get(f"api/predictions/{int(prediction_id)}/", f"prediction {prediction_id}").json()

    # Writes: a selection's tasks ------------------------------------------------------------------
    def _write(self, method: str, path: str, what: str, expect: int, **kwargs: Any) -> httpx.Response:
        """A write with the token (renewing an expired access token once); InvalidInput/LabelStudioUnavailable
        naming ``what`` unless Label Studio answered ``expect``."""
        response = self._send(method, path, **kwargs)
        if response.status_code == 401 and self._personal_token:
            response = self._send(method, path, auth=self._auth(renew=True), **kwargs)
        if response.status_code != expect:
            _check(response, what)  # 5xx, 401/403
            raise InvalidInput(f"{what}: Label Studio answered HTTP {response.status_code}: {response.text[:300]}")
        return response

    def label_config(self, project: int) -> str:
        """The labelling config (XML) of ``project``."""
        return self._get(f"api/projects/{int(project)}/", f"Label Studio project {project}").json()["label_config"]

    def import_image(self, project: int, name: str, image: bytes) -> int:
        """Upload one image as a new task of ``project``; the task's id."""
        answer = self._write(
            "POST", f"api/projects/{int(project)}/import", f"uploading {name} to project {project}", 201,
            params={"return_task_ids": "true"}, files={"file": (name, image)},
        ).json()
        (task_id,) = answer["task_ids"]
        return int(task_id)

    def add_prediction(self, task: int, result: list[dict[str, Any]], score: float, model_version: str) -> int:
        """Store a prediction on ``task`` (what the reviewer opens pre-annotated); its id."""
        body = {"task": int(task), "result": result, "score": score, "model_version": model_version}
        return int(self._write("POST", "api/predictions/", f"prediction for task {task}", 201, json=body).json()["id"])

    def task_url(self, project: int, task: int) -> str:
        """Where a reviewer opens the task."""
        return urljoin(self.url, f"projects/{int(project)}/data?task={int(task)}")



def _check_format(head: bytes, what: str) -> None:
    """Refuse bytes that do not start like an accepted image format (``labels.image_format``)."""
    if image_format(head) is None:
        raise InvalidInput(f"{what}: not an image, or not one of the accepted formats ({', '.join(IMAGE_SUFFIXES)})")


def _check(response: httpx.Response, what: str) -> None:
    """Raise, naming ``what``, unless Label Studio answered 200."""
    if response.status_code >= 500:
        raise LabelStudioUnavailable(f"{what}: Label Studio answered HTTP {response.status_code}")
    if response.status_code in (401, 403):
        raise InvalidInput(
            f"{what}: Label Studio refused the API key (HTTP {response.status_code}); "
            "set YOLO_RETRAIN_LABEL_STUDIO_API_KEY to a token of a user of this project"
        )
    if response.status_code != 200:
        raise InvalidInput(f"{what}: Label Studio answered HTTP {response.status_code}")
