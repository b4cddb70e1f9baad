"""Drives Firn's web UI in headless Chromium (Debian's, through Playwright) against a live
`firn serve` and checks what a person would check: the page loads without console errors,
the flame graph shows the workload's hot function, search highlights it with its share,
zoom, the table and the sandwich work, the diff colours the changed functions, the series
chart groups and zooms, autocompletion offers label names and values, pprof downloads, a
shared URL restores the view, and a token-protected node asks for its token.

Usage: ui_browser.py FACTS_JSON CHROMIUM SCREENSHOT_DIR
FACTS_JSON names the servers and the workload (see ui.rs). Prints a JSON summary; exits 1
with every failed check listed.
"""

import gzip
import json
import sys
import urllib.parse

from playwright.sync_api import sync_playwright

facts = json.loads(sys.argv[1])
chromium = sys.argv[2]
shots = sys.argv[3]
failures = []
summary = {}


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def url(base, **params):
    return f"{base}/?{urllib.parse.urlencode(params)}" if params else f"{base}/"


def loaded(page, previous=None):
    """Waits for a run of the page to finish (body[data-loaded] moves past `previous`)."""
    page.wait_for_function(
        "p => (document.body.dataset.loaded && document.body.dataset.loaded !== p)"
        " || document.body.dataset.failed",
        arg=previous or "",
        timeout=30000,
    )
    failed = page.evaluate("document.body.dataset.failed || ''")
    if failed:
        failures.append(f"a run failed: {page.inner_text('#error')}")
    return page.evaluate("document.body.dataset.loaded")


def frames(page):
    return page.evaluate("window.firn.frames()")


def frame(page, name):
    found = [f for f in frames(page) if f["name"] == name]
    return max(found, key=lambda f: f["w"]) if found else None


def click_frame(page, name, button="left"):
    f = frame(page, name)
    box = page.locator("#flame").bounding_box()
    page.mouse.click(box["x"] + f["x"] + f["w"] / 2, box["y"] + f["y"] + f["h"] / 2, button=button)


with sync_playwright() as p:
    # Root in CI needs --no-sandbox; a container's small /dev/shm, --disable-dev-shm-usage.
    browser = p.chromium.launch(
        executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"]
    )
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    base = facts["url"]
    # Everything the page loads comes from the node: no CDN, no other origin.
    origins = {base, facts.get("token_url")}
    foreign = []
    context.on(
        "request",
        lambda r: None
        if r.url.startswith(("data:", "blob:")) or any(o and r.url.startswith(o + "/") for o in origins)
        else foreign.append(r.url),
    )
    service = facts["service"]
    query = f'{{service_name="{service}"}}'
    width = None

    # 1. The page, a tenant picked, a selector typed with autocompletion.
    page.goto(url(base))
    run = loaded(page)
    page.fill("#tenant", facts["tenant"])
    page.press("#tenant", "Enter")
    run = loaded(page, run)
    check(page.input_value("#profile-type").startswith("process_cpu:cpu:nanoseconds"),
          f"a CPU profile type picked: {page.input_value('#profile-type')}")
    page.click("#selector")
    page.keyboard.type("{serv")
    offered = "[...document.querySelectorAll('#suggestions li')].map(li => li.textContent)"
    page.wait_for_function(f"{offered}.join() === 'service_name'", timeout=10000)
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"[...document.querySelectorAll('#suggestions li')].some(li => li.textContent === {json.dumps(service)})",
        timeout=10000,
    )
    values = page.locator("#suggestions li").all_inner_texts()
    check(service in values and facts["big_service"] in values, f"label values offered: {values}")
    page.keyboard.type(service[:4])
    page.keyboard.press("Tab")
    check(page.input_value("#selector") == query, f"the selector completed: {page.input_value('#selector')!r}")
    page.keyboard.press("Enter")
    run = loaded(page, run)
    page.screenshot(path=f"{shots}/flame-graph.png", full_page=True)

    # 2. The flame graph: the hot function is the widest leaf.
    width = page.locator("#flame").bounding_box()["width"]
    hot = frame(page, facts["hot"])
    leaves = [f for f in frames(page) if f["name"] in facts["leaves"]]
    check(hot is not None and hot == max(leaves, key=lambda f: f["w"]),
          f"the hot function {facts['hot']} is the widest leaf: {leaves}")
    check(hot and abs(hot["w"] / width - facts["hot_share"]) < 0.02,
          f"its width is its share {facts['hot_share']}: {hot and hot['w'] / width}")
    # Its tooltip: total and self, in milliseconds, with percentages.
    box = page.locator("#flame").bounding_box()
    page.mouse.move(box["x"] + hot["x"] + hot["w"] / 2, box["y"] + hot["y"] + 5)
    tip = page.inner_text("#tooltip")
    check(facts["hot"] in tip and facts["hot_tooltip"] in tip and "%" in tip,
          f"the tooltip names the frame and its value ({facts['hot_tooltip']}): {tip!r}")

    # 3. Search highlights the matching frames and shows their share.
    page.fill("#search", facts["hot"])
    share = float(page.get_attribute("#search-share", "data-share"))
    check(abs(share - facts["hot_share"]) < 1e-6, f"search share {share} vs {facts['hot_share']}")
    lit = [f["name"] for f in frames(page) if f["matched"]]
    check(lit and set(lit) == {facts["hot"]}, f"only {facts['hot']} highlighted: {lit}")
    check("matches" in page.inner_text("#search-share"), "the share is shown")
    page.screenshot(path=f"{shots}/search.png", full_page=True)
    page.fill("#search", "")

    # 4. Zoom: a click on the parent makes it the whole width; a click on the root resets.
    click_frame(page, facts["parent"])
    parent = frame(page, facts["parent"])
    check(parent and abs(parent["w"] - width) < 1, f"zoomed: {facts['parent']} spans the width: {parent}")
    check(frame(page, facts["other_branch"]) is None, "frames outside the zoomed one are gone")
    zoomed_url = page.url
    click_frame(page, "total")
    check(frame(page, facts["other_branch"]) is not None, "a click on the root zooms out")

    # 5. The table: sorted by self, then total; a click focuses the flame graph.
    page.click("#tabs button[data-view=table]")
    rows = page.locator("#top tbody tr").evaluate_all("rs => rs.map(r => r.dataset.fn)")
    check(rows and rows[0] == facts["hot"], f"the top row by self is {facts['hot']}: {rows[:5]}")
    page.click("#top th[data-sort=total]")
    rows = page.locator("#top tbody tr").evaluate_all("rs => rs.map(r => r.dataset.fn)")
    check(rows[:2] == facts["top_by_total"], f"by total: {rows[:5]} vs {facts['top_by_total']}")
    page.screenshot(path=f"{shots}/top-table.png", full_page=True)
    page.click(f"#top tbody tr[data-fn={json.dumps(facts['hot'])}]")
    check(page.evaluate("window.firn.state.view") == "flame", "a row click opens the flame graph")
    hot = frame(page, facts["hot"])
    check(hot and abs(hot["w"] - width) < 1 and hot["matched"], f"focused on {facts['hot']}: {hot}")

    # 6. The sandwich: the function's callers and callees.
    page.click("#tabs button[data-view=sandwich]")
    sandwich = page.evaluate("window.firn.sandwich()")
    check(sandwich and facts["parent"] in sandwich["callers"] and "main" in sandwich["callers"],
          f"callers of {facts['hot']}: {sandwich}")
    check(sandwich and facts["callee"] in sandwich["callees"], f"callees of {facts['hot']}: {sandwich}")
    page.screenshot(path=f"{shots}/sandwich.png", full_page=True)

    # 7. The series chart: grouped by pod; a drag zooms the time range.
    page.click("#tabs button[data-view=flame]")
    page.click("#reset-zoom")
    page.fill("#search", "")
    check(page.get_attribute("#chart", "data-series") == "1", "one series ungrouped")
    page.select_option("#group-by", "pod")
    page.wait_for_function("document.getElementById('chart').dataset.series === '2'", timeout=10000)
    legend = page.inner_text("#legend")
    check("pod=a" in legend and "pod=b" in legend, f"grouped by pod: {legend!r}")
    page.screenshot(path=f"{shots}/series.png", full_page=True)
    chart = page.locator("#chart").bounding_box()
    page.mouse.move(chart["x"] + chart["width"] * 0.1, chart["y"] + 50)
    page.mouse.down()
    page.mouse.move(chart["x"] + chart["width"] * 0.9, chart["y"] + 50, steps=5)
    page.mouse.up()
    run = loaded(page, run)
    state = page.evaluate("window.firn.state")
    check(state["from"].endswith("Z") and state["until"].endswith("Z"), f"an absolute range: {state}")
    check(page.input_value("#preset") == "custom", "the preset shows an absolute range")

    # 8. The diff: the baseline range against the comparison range.
    b0, b1 = facts["baseline"]
    c0, c1 = facts["comparison"]
    page.fill("#from", b0)
    page.fill("#until", b1)
    page.click("#tabs button[data-view=diff]")
    run = loaded(page, run)
    page.fill("#right-from", c0)
    page.fill("#right-until", c1)
    page.press("#right-until", "Enter")
    run = loaded(page, run)
    grew = frame(page, facts["grew"])
    shrank = frame(page, facts["shrank"])
    same = frame(page, facts["hot"])
    check(grew and grew["fill"].startswith("hsl(3,"), f"{facts['grew']} coloured as grown: {grew}")
    check(shrank and shrank["fill"].startswith("hsl(140,"), f"{facts['shrank']} coloured as shrunk: {shrank}")
    check(same and same["fill"].startswith("hsl(220,"), f"{facts['hot']} unchanged: {same}")
    page.screenshot(path=f"{shots}/diff.png", full_page=True)

    # 9. A shared URL restores the whole view in a new page.
    shared = page.url
    other = context.new_page()
    other.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    other.goto(shared)
    loaded(other)
    check(other.evaluate("window.firn.state") == page.evaluate("window.firn.state"),
          "the shared URL restores the state")
    check(frames(other) == frames(page), "the shared URL draws the same diff")
    other.goto(zoomed_url)
    loaded(other)
    restored = frame(other, facts["parent"])
    check(restored and abs(restored["w"] - width) < 1, f"a shared zoom is restored: {restored}")
    other.close()

    # 10. pprof download of the current selection.
    page.click("#tabs button[data-view=flame]")
    run = loaded(page, run)
    with page.expect_download() as d:
        page.click("#download")
    path = d.value.path()
    data = open(path, "rb").read()
    check(data[:2] == b"\x1f\x8b" and len(gzip.decompress(data)) > 0, "a gzipped pprof downloaded")
    summary["download_bytes"] = len(data)

    # 11. A large profile: 50,000 nodes, redrawn.
    page.fill("#selector", f'{{service_name="{facts["big_service"]}"}}')
    page.fill("#from", "now-1h")
    page.fill("#until", "now")
    page.press("#selector", "Enter")
    run = loaded(page, run)
    nodes = int(page.get_attribute("#flame", "data-nodes"))
    check(nodes >= facts["big_nodes"], f"the large profile has {nodes} nodes")
    summary["big_nodes"] = nodes
    summary["flatten_ms"] = float(page.get_attribute("#flame", "data-flatten-ms"))

    def redraws():
        """The median of 15 redraws, in ms, and the frames each draws."""
        times = sorted(page.evaluate("window.firn.redraw()") for _ in range(15))
        return times[len(times) // 2], int(page.get_attribute("#flame", "data-drawn"))

    summary["redraw_ms"], summary["redraw_frames"] = redraws()
    page.screenshot(path=f"{shots}/large-profile.png")
    # Zoomed into one module: its functions wide enough to draw (most of its 1,000).
    click_frame(page, "module7")
    summary["zoomed_redraw_ms"], summary["zoomed_redraw_frames"] = redraws()
    check(summary["zoomed_redraw_frames"] > 800, f"zoomed, the module's functions drawn: {summary}")


    # 12. A node with --auth=token: the page asks for the token, then shows the profile.
    if facts.get("token_url"):
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(url(facts["token_url"], query=query))
        page.wait_for_selector("#token-dialog[open]", timeout=10000)
        page.screenshot(path=f"{shots}/token.png")
        page.fill("#token-input", facts["token"])
        page.click("#token-save")
        loaded(page, page.evaluate("document.body.dataset.loaded || ''"))
        check(frame(page, facts["hot"]) is not None, "with the token the flame graph shows")
    check(not errors, f"no console errors: {errors}")
    check(not foreign, f"no request leaves the node: {foreign}")
    browser.close()

summary["failures"] = failures
print(json.dumps(summary))
sys.exit(1 if failures else 0)
