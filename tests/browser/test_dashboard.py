"""Browser tests of `bedrock-meter dashboard` in headless Debian Chromium.

Run through scripts/browser-tests.sh, which builds the CLI and starts
DynamoDB Local in a private network namespace. This module creates its own
table, replays events/ with the CLI, serves the dashboard on 127.0.0.1 and
checks every page in a real browser: no console error, no request leaving
the server, totals equal to `bedrock-meter report --format json`, markup in
a user id or a tag value shown as text, every page readable with JavaScript
off, and an event replayed while a page is open shown on its next refresh.
The replay and the server run with ATTRIBUTION_TAGS=feature,principal (a few
sample events carry `feature` in requestMetadata), so the tag pages
(/tags/KEY, /tags/KEY/VALUE) have data. Screenshots go to
target/dashboard-screenshots/; with UPDATE_DOCS_SCREENSHOTS=1 the tag
page's is also copied to docs/dashboard-tags.png.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BM = Path(os.environ.get("BEDROCK_METER", TARGET / "debug" / "bedrock-meter"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = TARGET / "dashboard-screenshots"
MONTH = "2026-11"
DAY = "2026-11-20"
MODEL = "anthropic.claude-haiku-4-5-20251001-v1:0"
EVIL = "<img src=x onerror=alert(1)>"
# The attribution tags of the replay and the server (see events/generate.py:
# `feature` is set on three records of 2026-11-18; `principal` comes from
# every record's identity ARN).
ATTRIBUTION_TAGS = "feature,principal"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

try:
    from playwright.sync_api import sync_playwright
except ImportError as e:  # fail loudly, never skip
    raise SystemExit(
        "the browser tests need the Python package playwright "
        "(pip install -r tests/browser/requirements.txt; never `playwright install`): %s" % e
    )

STATE = {}


def bm(*args, check=True):
    env = dict(os.environ, USAGE_TABLE=STATE["table"], ATTRIBUTION_TAGS=ATTRIBUTION_TAGS)
    out = subprocess.run([str(BM), *args], env=env, capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError("bedrock-meter %s failed (%d): %s" % (" ".join(args), out.returncode, out.stderr))
    return out


def report_rows(*args):
    return [json.loads(line) for line in bm("report", *args, "--format", "json").stdout.splitlines() if line.strip()]


def record(user, request_id, timestamp=DAY + "T12:00:00Z", tokens=(1000, 500), feature=None):
    """One newline-delimited invocation record (Bedrock's S3 delivery format)."""
    metadata = {"user": user}
    if feature is not None:
        metadata["feature"] = feature
    return json.dumps({
        "schemaType": "ModelInvocationLog",
        "schemaVersion": "1.0",
        "timestamp": timestamp,
        "accountId": "111111111111",
        "identity": {"arn": "arn:aws:sts::111111111111:assumed-role/BedrockUsers/someone"},
        "region": "us-east-1",
        "requestId": request_id,
        "operation": "Converse",
        "modelId": MODEL,
        "requestMetadata": metadata,
        "input": {"inputContentType": "application/json", "inputTokenCount": tokens[0]},
        "output": {"outputContentType": "application/json", "outputTokenCount": tokens[1]},
    })


def replay_records(lines):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        path = f.name
    try:
        bm("replay", path)
    finally:
        os.unlink(path)


def setUpModule():
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("AWS_ENDPOINT_URL is not set: run through scripts/browser-tests.sh (DynamoDB Local)")
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit("no Chromium at %s: apt-get install chromium (Debian), or set CHROMIUM" % CHROMIUM)
    if not BM.exists():
        raise SystemExit("no %s: cargo build -p bedrock-meter-cli first" % BM)
    SHOTS.mkdir(parents=True, exist_ok=True)
    STATE["table"] = "dashboard-" + uuid.uuid4().hex[:8]
    bm("init")
    bm("replay", str(ROOT / "events"))
    replay_records([record(EVIL, "browser-evil-1"), record("dave", "browser-evil-tag-1", feature=EVIL)])
    bm("budget", "set", "--user", "alice", "--daily", "1", "--monthly", "5")
    bm("budget", "set", "--org", "--monthly", "100")
    env = dict(os.environ, USAGE_TABLE=STATE["table"], RUST_LOG="warn", ATTRIBUTION_TAGS=ATTRIBUTION_TAGS)
    proc = subprocess.Popen(
        [str(BM), "dashboard", "--listen", "127.0.0.1:0", "--refresh", "2"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    STATE["server"] = proc
    unittest.addModuleCleanup(stop_server)  # runs even when setUpModule fails later
    line = proc.stdout.readline()
    m = re.search(r"http://(127\.0\.0\.1:\d+)/", line)
    if not m:
        proc.kill()
        raise SystemExit("the dashboard did not start (its errors are above): %r" % line)
    STATE["base"] = "http://%s" % m.group(1)
    pw = sync_playwright().start()
    unittest.addModuleCleanup(pw.stop)
    # launch() gives Chromium a fresh --user-data-dir of its own (a new
    # temporary profile, removed on close); it refuses one in args.
    STATE["browser"] = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def tearDownModule():
    if "browser" in STATE:
        STATE["browser"].close()


def stop_server():
    proc = STATE.pop("server", None)
    if proc:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stdout.close()


def url(path):
    return STATE["base"] + path


def seg(s):
    return urllib.parse.quote(s, safe="")


PAGES = {
    "overview": "/?month=" + MONTH,
    "user": "/users/alice?from=2026-11-01&to=2026-11-30",
    "model": "/models/%s?from=2026-11-01&to=2026-11-30&day=%s" % (seg(MODEL), DAY),
    "day": "/days/" + DAY,
    "budgets": "/budgets",
}

TAG_PAGES = {
    "tags-feature": "/tags/feature?month=" + MONTH,
    "tags-principal": "/tags/principal?month=" + MONTH,
    "tag-value": "/tags/feature/search?from=2026-11-01&to=2026-11-30",
}


def get_json(path):
    sep = "&" if "?" in path else "?"
    with urllib.request.urlopen(url(path) + sep + "format=json", timeout=30) as r:
        return json.load(r)


def dec(s):
    return Decimal(str(s))


class Watched:
    """A page whose console errors, page errors, dialogs and requests are recorded."""

    def __init__(self, js=True):
        self.context = STATE["browser"].new_context(java_script_enabled=js, viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.errors, self.outside, self.dialogs = [], [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

        def route(r):
            if r.request.url.startswith(STATE["base"] + "/"):
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        self.context.route("**/*", route)

    def close(self):
        self.context.close()


class DashboardInABrowser(unittest.TestCase):
    def setUp(self):
        self.w = Watched()
        self.page = self.w.page

    def tearDown(self):
        self.w.close()

    def test_every_page_loads_with_no_console_error_and_no_request_leaving_the_server(self):
        for name, path in PAGES.items():
            with self.subTest(page=name):
                res = self.page.goto(url(path))
                self.assertEqual(res.status, 200, name)
                self.page.wait_for_load_state("networkidle")
                self.assertIn("bedrock-meter", self.page.title())
                csp = res.headers.get("content-security-policy", "")
                self.assertIn("default-src 'none'", csp)
                self.assertIn("script-src 'self'", csp)
                self.page.screenshot(path=str(SHOTS / ("dashboard-%s.png" % name)), full_page=True)
        self.assertEqual(self.w.errors, [], "console errors")
        self.assertEqual(self.w.outside, [], "requests that left the server")
        # Each page links to the others.
        self.page.goto(url(PAGES["overview"]))
        self.page.click("nav >> text=Budgets")
        self.assertTrue(self.page.url.endswith("/budgets"))
        self.page.goto(url(PAGES["overview"]))
        self.page.click("main table a >> text=alice")
        self.assertIn("/users/alice", self.page.url)

    def exact_spend_shown(self, selector=".kpi .value .money"):
        title = self.page.locator(selector).first.get_attribute("title")
        m = re.search(r"exact ([0-9.]+) USD", title or "")
        self.assertIsNotNone(m, title)
        return dec(m.group(1))

    def test_the_overview_user_and_day_totals_equal_the_report(self):
        # Overview: every user's month and the organisation's, as the report.
        rows = report_rows("--month", MONTH)
        users = [r for r in rows if r["kind"] == "user_month"]
        self.assertGreater(len(users), 2)
        expected_total = sum(dec(r["cost_usd"]) for r in users)
        org = [r for r in rows if r["kind"] == "organisation_month"]
        j = get_json(PAGES["overview"])["tables"]
        if org:  # the report prints the organisation's month too
            self.assertEqual(j["total"], org)
        for k in ["invocations", "errors", "input_tokens", "output_tokens", "cache_read_input_tokens",
                  "cache_write_input_tokens", "unpriced_invocations"]:
            self.assertEqual(j["total"][0][k], sum(r[k] for r in users), k)
        self.assertEqual(dec(j["total"][0]["cost_usd"]), expected_total)
        self.assertEqual(j["users"], sorted(users, key=lambda r: (-dec(r["cost_usd"]), r["user"])))
        self.page.goto(url(PAGES["overview"]))
        self.assertEqual(self.exact_spend_shown(), expected_total)
        # Some invocation of the month is unpriced: the total is marked as a lower bound.
        self.assertGreater(j["total"][0]["unpriced_invocations"], 0)
        self.assertIn("≥", self.page.locator(".kpi .value").first.inner_text())
        # A user page: per model and day, and per day, as the report.
        span = ("--user", "alice", "--from", "2026-11-01", "--to", "2026-11-30")
        model_days = [r for r in report_rows(*span) if r["kind"] == "user_model_day"]
        days = [r for r in report_rows(*span, "--by", "day") if r["kind"] == "user_day"]
        j = get_json(PAGES["user"])["tables"]
        by_key = lambda rs: sorted(rs, key=lambda r: json.dumps(r, sort_keys=True))  # noqa: E731
        self.assertGreater(len(model_days), 1)
        self.assertEqual(by_key(j["model_days"]), by_key(model_days))
        self.assertEqual(by_key(j["days"]), by_key(days))
        self.page.goto(url(PAGES["user"]))
        self.assertEqual(self.exact_spend_shown(), sum(dec(r["cost_usd"]) for r in days))
        # A day page: the users and the organisation's total, as the report.
        rows = report_rows("--day", DAY)
        j = get_json(PAGES["day"])["tables"]
        self.assertEqual(j["users"] + j["total"], rows)
        self.page.goto(url(PAGES["day"]))
        self.assertEqual(self.exact_spend_shown(), dec(rows[-1]["cost_usd"]))
        self.assertEqual(rows[-1]["kind"], "organisation_day")

    def test_the_tag_pages_load_cleanly_are_linked_and_equal_the_tag_report(self):
        for name, path in TAG_PAGES.items():
            with self.subTest(page=name):
                res = self.page.goto(url(path))
                self.assertEqual(res.status, 200, name)
                self.page.wait_for_load_state("networkidle")
                self.assertIn("bedrock-meter", self.page.title())
                self.assertIn("default-src 'none'", res.headers.get("content-security-policy", ""))
                self.page.screenshot(path=str(SHOTS / ("dashboard-%s.png" % name)), full_page=True)
        self.assertEqual(self.w.errors, [], "console errors")
        self.assertEqual(self.w.outside, [], "requests that left the server")
        # Every value of a key in the month, and the organisation's total, as
        # `bedrock-meter report --tag KEY --month M --format json` prints them.
        for key in ["feature", "principal"]:
            with self.subTest(key=key):
                rows = report_rows("--tag", key, "--month", MONTH)
                values = [r for r in rows if r["kind"] == "tag_month"]
                total = [r for r in rows if r["kind"] == "organisation_month"]
                self.assertGreater(len(values), 1, key)
                self.assertEqual(len(total), 1, key)
                j = get_json(TAG_PAGES["tags-" + key])["tables"]
                self.assertEqual(j["values"], values)
                self.assertEqual(j["total"], total)
                self.page.goto(url(TAG_PAGES["tags-" + key]))
                self.assertEqual(self.exact_spend_shown(), sum(dec(r["cost_usd"]) for r in values))
        # `feature` has the three tagged sample records, the markup value,
        # and `untagged` (with the unpriced model): a lower bound.
        values = {r["value"] for r in report_rows("--tag", "feature", "--month", MONTH) if r["kind"] == "tag_month"}
        self.assertTrue({"chat", "code-review", "search", "untagged", EVIL} <= values, values)
        self.page.goto(url(TAG_PAGES["tags-feature"]))
        self.assertIn("≥", self.page.locator(".kpi .value").first.inner_text())
        # One value per model and day, and per day, as `--tag KEY=VALUE`.
        rows = report_rows("--tag", "feature=search", "--from", "2026-11-01", "--to", "2026-11-30")
        model_days = [r for r in rows if r["kind"] == "tag_model_day"]
        days = [r for r in rows if r["kind"] == "tag_day"]
        self.assertGreater(len(model_days), 0)
        j = get_json(TAG_PAGES["tag-value"])["tables"]
        by_key = lambda rs: sorted(rs, key=lambda r: json.dumps(r, sort_keys=True))  # noqa: E731
        self.assertEqual(by_key(j["model_days"]), by_key(model_days))
        self.assertEqual(by_key(j["days"]), by_key(days))
        self.page.goto(url(TAG_PAGES["tag-value"]))
        self.assertEqual(self.exact_spend_shown(), sum(dec(r["cost_usd"]) for r in days))
        self.page.screenshot(path=str(SHOTS / "dashboard-tag-value.png"), full_page=True)
        # The overview links each ATTRIBUTION_TAGS key; the key page links
        # each value.
        self.page.goto(url(PAGES["overview"]))
        self.page.click("nav >> text=feature")
        self.assertIn("/tags/feature", self.page.url)
        self.page.screenshot(path=str(SHOTS / "dashboard-tags.png"), full_page=True)
        if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
            # Refresh the README's picture on request only: a test run must
            # not modify tracked files.
            (ROOT / "docs" / "dashboard-tags.png").write_bytes((SHOTS / "dashboard-tags.png").read_bytes())
        self.page.click("main table a >> text=code-review")
        self.assertIn("/tags/feature/code-review", self.page.url)
        self.assertIn("code-review", self.page.locator("h1").inner_text())
        self.assertEqual(self.w.errors, [])

    def test_a_tag_value_holding_markup_shows_as_text_and_runs_nothing(self):
        for path in [TAG_PAGES["tags-feature"], "/tags/feature/" + seg(EVIL)]:
            self.page.goto(url(path))
            self.page.wait_for_load_state("networkidle")
            self.assertEqual(self.page.locator("img").count(), 0, path)
            self.assertIn(EVIL, self.page.locator("main").inner_text(), path)
        self.assertIn(EVIL, self.page.locator("h1").inner_text())
        time.sleep(0.5)
        self.assertEqual(self.w.dialogs, [], "a script ran")
        self.assertEqual(self.w.errors, [])

    def test_a_user_id_holding_markup_shows_as_text_and_runs_nothing(self):
        for path in ["/users/" + seg(EVIL), PAGES["day"], PAGES["overview"]]:
            self.page.goto(url(path))
            self.page.wait_for_load_state("networkidle")
            self.assertEqual(self.page.locator("img").count(), 0, path)
            self.assertIn(EVIL, self.page.locator("main").inner_text(), path)
        self.page.goto(url("/users/" + seg(EVIL)))
        self.assertEqual(self.page.locator("h1 .id").inner_text(), EVIL)
        time.sleep(0.5)
        self.assertEqual(self.w.dialogs, [], "a script ran")
        self.assertEqual(self.w.errors, [])

    def test_the_numbers_change_on_the_next_refresh_after_one_more_event(self):
        self.page.goto(url(PAGES["day"]))
        before = self.exact_spend_shown()
        as_of = self.page.locator("#data-as-of").inner_text()
        self.page.evaluate("window.__not_reloaded = true")
        time.sleep(1.1)  # updated_at has a one-second resolution
        replay_records([record("refresh-check", "browser-refresh-" + uuid.uuid4().hex)])
        deadline = time.time() + 20
        after = before
        while time.time() < deadline and after == before:
            time.sleep(0.5)
            after = self.exact_spend_shown()
        self.assertGreater(after, before, "the page did not show the new event")
        self.assertIn("refresh-check", self.page.locator("main").inner_text())
        self.assertTrue(self.page.evaluate("window.__not_reloaded === true"), "refreshed by reloading")
        self.assertNotEqual(self.page.locator("#data-as-of").inner_text(), as_of)
        self.assertIn("refreshed at", self.page.locator("#refreshed").inner_text())
        self.assertEqual(self.w.errors, [])


class DashboardWithoutJavaScript(unittest.TestCase):
    def test_every_page_shows_its_numbers_with_javascript_off(self):
        w = Watched(js=False)
        try:
            for name, path in {**PAGES, **TAG_PAGES}.items():
                with self.subTest(page=name):
                    w.page.goto(url(path))
                    main = w.page.locator("main").inner_text()
                    self.assertRegex(main, r"\$[0-9,]+\.[0-9]{2}", name)
                    if name != "budgets":
                        self.assertGreater(w.page.locator("main table tbody tr").count(), 0, name)
                    if name in ("overview", "user", "model") or name in TAG_PAGES:
                        self.assertGreaterEqual(w.page.locator("svg.chart").count(), 1, name)
                    w.page.screenshot(path=str(SHOTS / ("dashboard-%s-nojs.png" % name)))
            self.assertEqual(w.outside, [])
        finally:
            w.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
