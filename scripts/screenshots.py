"""Screenshots of the console for the docs: docs/screenshots/console-desktop.png (1440x900) and
console-phone.png (390x844), taken with headless Chromium (the Debian package) against a demo
server with a few functions and invocations.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frazil.testing import LocalServer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SHOTS = {"console-desktop.png": {"width": 1440, "height": 900}, "console-phone.png": {"width": 390, "height": 844}}
DEMO = {
    "greeter": "def main(event, context):\n    print('hello', event.get('name'))\n    return {'hello': event.get('name')}\n",
    "thumbnail": "def main(event, context):\n    if event.get('fail'):\n        raise ValueError('not an image')\n"
                 "    return {'width': 128}\n",
}


def demo_server(data_dir: Path) -> LocalServer:
    srv = LocalServer(data_dir, env={"FRAZIL_SANDBOX": "plain"}).start()
    for name, code in DEMO.items():
        srv.deploy(name, {"index.py": code})
    for i in range(12):
        srv.invoke("greeter", {"name": f"user {i}"})
        srv.invoke("thumbnail", {"fail": i % 4 == 0})
    return srv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data").mkdir()
        srv = demo_server(Path(tmp) / "data" / "frazil")
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
                for filename, viewport in SHOTS.items():
                    page = browser.new_page(viewport=viewport)
                    page.goto(f"{srv.url}/console")
                    page.fill("#admin-key", srv.admin_key)
                    page.click("form.signin-card button[type=submit]")
                    page.wait_for_selector(".sidebar .fn-list")
                    page.goto(f"{srv.url}/console#/fn/thumbnail/invocations")
                    page.wait_for_selector("tr.clickable")
                    page.screenshot(path=str(out / filename))
                    page.close()
                browser.close()
        finally:
            srv.close()
    for filename in SHOTS:
        print(out / filename, (out / filename).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
