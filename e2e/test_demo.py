"""The demo (the README's main job) in its short form: a whole sale through the deployed API,
its ledger, every buyer behaviour, and the HTML report rendered by a real headless browser
(Debian's Chromium)."""

import json
import shutil
import subprocess

import pytest

from conftest import ROOT

DEMO = ROOT / "target" / "debug" / "demo"
SHORT = ROOT / "tools" / "crowd" / "scenarios" / "short.toml"


def chromium(*args, timeout=120):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium is not installed (./dev setup installs it)"
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *args],
        capture_output=True, text=True, timeout=timeout, check=True,
    )


def test_a_bad_scenario_file_is_refused_with_the_field_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sale]\nstock = 10\nhold_seconds = 5\n")
    run = subprocess.run([str(DEMO), "--scenario", str(bad), "--quiet"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "sale.hold_seconds" in run.stderr, run.stderr
    bad.write_text("[crowd]\nbuyerz = 3\n")
    run = subprocess.run([str(DEMO), "--scenario", str(bad), "--quiet"], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "buyerz" in run.stderr, run.stderr


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    report, figures = out / "report.html", out / "run.json"
    run = subprocess.run(
        [str(DEMO), "--scenario", str(SHORT), "--quiet", "--report", str(report), "--json", str(figures)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    print(run.stdout[-4000:])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return report, json.loads(figures.read_text())


def test_the_short_demo_sells_and_its_ledger_passes(short_demo):
    _, run = short_demo
    verdict = run["verdict"]
    assert verdict["pass"], [c for c in verdict["checks"] if not c["ok"]]
    f = verdict["figures"]
    assert (f["oversold"], f["lost"], f["double_charges"], f["stuck"]) == (0, 0, 0, 0)
    stock = run["scenario"]["sale"]["stock"]
    assert f["available"] + f["held"] + f["sold"] == stock
    assert f["sold"] > 0 and f["orders"] == f["sold"]
    # The ledger was read from every source: Redis levels per shard and the provider's charges.
    assert len(run["ledger"]["levels"]["shards"]) == run["scenario"]["sale"]["shards"]
    charges = run["ledger"]["charges"]
    assert len([c for c in charges if c["status"] == "succeeded" and c["refunded"] == 0]) == f["orders"]
    assert verdict["not_checked"] == []
    # Every reservation a buyer was granted was checked against its record.
    assert len(run["ledger"]["granted"]) == sum(len(r["reservations"]) for r in run["reports"]) > 0
    assert {l["endpoint"] for l in run["latencies"]} == {"reserve", "pay", "get_reservation"}


def test_every_behaviour_of_the_mix_was_exercised_and_ended_as_it_should(short_demo):
    _, run = short_demo
    mix = {name for name, weight in run["scenario"]["mix"].items() if weight > 0}
    behaviours = run["behaviours"]
    assert set(behaviours) == mix
    for name, stats in behaviours.items():
        if name == "bot":
            continue  # bots should get nothing (the next test)
        assert stats["reserved"] >= 1, f"{name} never got a unit: {stats}"
        assert stats["as_expected"] == stats["buyers"], f"{name}: {stats['outcomes']}"
    # The outcomes that make each behaviour what it is were seen.
    seen = {o for s in behaviours.values() for o in s["outcomes"]}
    for outcome in ("confirmed", "abandoned", "refused after expiry"):
        assert outcome in seen, seen
    assert any(o.startswith("confirmed after decline") or o.startswith("declined, then") for o in seen), seen
    # An abandoned hold came back: its reservation expired and its unit went back on sale.
    assert sum(1 for r in run["ledger"]["reservations"] if r["status"] == "EXPIRED") >= 1
    greedy = [r for r in run["reports"] if r["behaviour"] == "greedy" and r["greedy"]]
    assert greedy and all(r["greedy"][0] <= run["scenario"]["sale"]["per_user_limit"] for r in greedy)


def test_the_bots_in_the_crowd_are_stopped_while_people_buy(short_demo):
    """Seed 004 flow 10's figures: about 90 % of bot traffic blocked, at most 1 % of people
    challenged; the bots end with nothing while people want every unit."""
    _, run = short_demo
    b = run["bots"]
    assert b["bots"] == run["behaviours"]["bot"]["buyers"] >= 4
    assert b["bot_reserve_requests"] >= b["bots"] * 2
    assert b["bot_requests_stopped_share"] >= 0.9, b
    assert b["bot_reservations"] == 0 and b["bot_units_confirmed"] == 0, b
    assert b["people_challenged"] == 0 and b["people_blocked"] == 0, b
    assert run["behaviours"]["bot"]["as_expected"] == b["bots"], run["behaviours"]["bot"]
    # People wanted more than the stock: someone was told sold out, and they bought units.
    f = run["verdict"]["figures"]
    assert f["sold"] > 0
    assert any(r["outcome"]["kind"] == "sold_out" for r in run["reports"] if r["behaviour"] != "bot")


def test_the_report_renders_in_a_headless_browser(short_demo, tmp_path):
    report, _ = short_demo
    dom = chromium("--dump-dom", report.as_uri()).stdout
    assert 'id="verdict" class="ok">PASS' in dom
    for plot in ("stock", "rate", "latency", "confirm"):
        assert f'id="plot-{plot}"' in dom
    assert dom.count("<svg") == 4
    assert "src=" not in dom and "href=" not in dom, "the page loads nothing from elsewhere"
    png = tmp_path / "report.png"
    chromium("--hide-scrollbars", "--window-size=1100,2600", f"--screenshot={png}", report.as_uri())
    assert png.stat().st_size > 50_000, "the screenshot is blank"
