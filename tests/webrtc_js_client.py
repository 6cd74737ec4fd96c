"""Run the published @reactor-team/js-sdk 2.9.0 (unmodified, bundled) in headless Chromium against a server.

Run inside the test's network namespace: ``python tests/webrtc_js_client.py BUNDLE URL SECONDS``. The
page is a local file holding the bundle (``tests/js_sdk/entry.js`` over the SDK): it calls the server
cross-origin, as a browser app does. Chromium and chromedriver start in the namespace too. Prints one
``RESULT {json}`` line: what ``window.runJsSdk`` resolved to (statuses, frames, indices, messages).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
    # Host candidates as plain addresses: nothing in the namespace answers mDNS for `*.local` names.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)  # fmt: skip


def main(bundle: str, url: str, seconds: float) -> dict:
    page = Path(tempfile.mkdtemp(prefix="js-sdk-")) / "index.html"
    page.write_text(
        "<!doctype html><html><body><video id=video autoplay muted playsinline></video>"
        f"<script>{Path(bundle).read_text()}</script></body></html>"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_script_timeout(seconds + 40)
        driver.get(page.as_uri())
        result: dict = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.runJsSdk(arguments[0], arguments[1]).then(done, (e) => done({failed: String(e)}));",
            url,
            seconds,
        )
        result["console"] = [entry["message"][:300] for entry in driver.get_log("browser")][-30:]
        return result
    finally:
        driver.quit()


if __name__ == "__main__":
    out = main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 3.0)
    print("RESULT " + json.dumps(out, default=str), flush=True)
