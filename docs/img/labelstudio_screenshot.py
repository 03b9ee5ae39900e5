"""Make docs/img/labelstudio-preannotations.png: Label Studio showing the champion's boxes on a task.

By hand, with Label Studio and `yolo-retrain labelstudio` running (see README, "Connect Label Studio"):

    LS_URL=http://127.0.0.1:8080 LS_TOKEN=<legacy token> LS_EMAIL=... LS_PASSWORD=... BACKEND_URL=http://127.0.0.1:9090 \\
    BACKEND_SECRET=<secret> IMAGES=<folder of images> .venv/bin/python docs/img/labelstudio_screenshot.py

It creates a project, imports the images, connects the backend, asks it for pre-annotations, logs in and lets
headless Chromium (Debian package `chromium`) render the first task through the DevTools protocol.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import websockets

OUT = Path(__file__).with_name("labelstudio-preannotations.png")
CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <RectangleLabels name="label" toName="image">
    <Label value="circle" background="#2f80ed"/><Label value="square" background="#eb5757"/>
  </RectangleLabels>
</View>"""


def prepare(env: dict[str, str]) -> str:
    """A project with the images, the backend connected and its predictions stored; the first task's URL path."""
    ls = httpx.Client(base_url=env["LS_URL"], headers={"Authorization": f"Token {env['LS_TOKEN']}"}, timeout=120)
    pid = ls.post("/api/projects", json={"title": "Review the champion", "label_config": CONFIG}).raise_for_status().json()["id"]
    images = sorted(Path(env["IMAGES"]).iterdir())[:6]
    ls.post(f"/api/projects/{pid}/import", files=[(f"f{i}", (p.name, p.read_bytes(), "image/png")) for i, p in enumerate(images)]).raise_for_status()
    ls.post("/api/webhooks", json={"project": pid, "url": f"{env['BACKEND_URL']}/webhook", "send_payload": True,
                                   "send_for_all_actions": False, "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"],
                                   "headers": {"X-Yolo-Retrain-Secret": env["BACKEND_SECRET"]}}).raise_for_status()
    ls.post("/api/ml", json={"url": env["BACKEND_URL"], "project": pid, "title": "yolo-retrain champion", "auth_method": "BASIC_AUTH",
                             "basic_auth_user": "label-studio", "basic_auth_pass": env["BACKEND_SECRET"]}).raise_for_status()
    ls.patch(f"/api/projects/{pid}", json={"show_collab_predictions": True}).raise_for_status()
    ls.post("/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": pid},
            json={"selectedItems": {"all": True, "excluded": []}}).raise_for_status()
    task = ls.get("/api/tasks", params={"project": pid}).json()["tasks"][0]["id"]
    return f"/projects/{pid}/data?task={task}"


def session_cookie(env: dict[str, str]) -> str:
    web = httpx.Client(base_url=env["LS_URL"], timeout=60)
    web.get("/user/login/")
    web.post("/user/login/", data={"email": env["LS_EMAIL"], "password": env["LS_PASSWORD"],
                                   "csrfmiddlewaretoken": web.cookies["csrftoken"]}, headers={"Referer": env["LS_URL"] + "/user/login/"})
    return web.cookies["sessionid"]


async def capture(url: str, cookie: str, base: str) -> bytes:
    port = 9333
    profile = tempfile.mkdtemp(prefix="chromium-")
    browser = subprocess.Popen([
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
        "--window-size=1400,900", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(60):
            try:
                pages = httpx.get(f"http://127.0.0.1:{port}/json").json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        page = next(p for p in pages if p["type"] == "page")
        async with websockets.connect(page["webSocketDebuggerUrl"], max_size=50_000_000) as ws:
            ids = iter(range(1, 10_000))

            async def call(method: str, **params) -> dict:
                n = next(ids)
                await ws.send(json.dumps({"id": n, "method": method, "params": params}))
                while True:
                    message = json.loads(await ws.recv())
                    if message.get("id") == n:
                        return message.get("result", {})

            await call("Network.enable")
            await call("Network.setCookie", name="sessionid", value=cookie, url=base)
            await call("Emulation.setDeviceMetricsOverride", width=1400, height=900, deviceScaleFactor=1, mobile=False)
            await call("Page.navigate", url=base + url)
            await asyncio.sleep(20)  # the labelling app loads its bundle, the task and the predictions
            shot = await call("Page.captureScreenshot", format="png")
            return base64.b64decode(shot["data"])
    finally:
        browser.terminate()
        browser.wait(10)


if __name__ == "__main__":
    env = dict(os.environ)
    path = prepare(env)
    OUT.write_bytes(asyncio.run(capture(path, session_cookie(env), env["LS_URL"])))
    print(f"wrote {OUT}")
