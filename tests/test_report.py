"""Run reports from short real runs: the page parses, its pictures exist, replies are
escaped, and two runs compare."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from rlvlm import train
from rlvlm.cli import main
from rlvlm.config import load_config
from rlvlm.report import load_run, write_report
from rlvlm.report.plots import PANELS, curve

SHORT_RUN = [
    "vision.steps=0",
    "sft.episodes=8",
    "sft.epochs=1",
    "ppo.updates=1",
    "ppo.num_envs=2",
    "ppo.steps_per_env=2",
    "ppo.epochs=1",
    "ppo.minibatch_size=4",
    "ppo.max_new_tokens=24",
    "eval.episodes=4",
    "eval.every=1",
]
VOID_TAGS = {"meta", "img", "br", "hr", "input", "link", "source", "wbr", "col", "area", "base"}


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two short real runs: with SFT at lambda 0.5, and PPO alone at lambda 0.1."""
    root = tmp_path_factory.mktemp("runs")
    made = []
    for name, extra in (
        ("with-sft", []),
        ("lambda-0.1", ["sft.episodes=0", "ppo.thought_coef=0.1"]),
    ):
        config = load_config("tiny/numberline", [*SHORT_RUN, *extra, f"out={root}", f"name={name}"])
        train.run(config, root / name, progress=False)
        made.append(root / name)
    return made[0], made[1]


class Page(HTMLParser):
    """A strict reading of a page: every element closed in order; images and scripts."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.html = html
        self.open: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.texts: list[str] = []
        self.feed(html)
        self.close()
        assert not self.open, f"unclosed elements: {self.open}"

    def handle_starttag(self, tag, attrs):
        self.images += [value for key, value in attrs if tag == "img" and key == "src"]
        self.scripts += tag == "script"
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()

    def handle_data(self, data):
        self.texts.append(data)


def read_page(path: Path) -> Page:
    page = Page(path.read_text())
    for src in page.images:
        assert not src.startswith(("http:", "https:", "//", "/")), src  # nothing fetched
        with Image.open(path.parent / src) as image:  # exists, and is a picture
            assert image.format == "PNG"
    return page


def test_the_trainer_saves_replays(two_runs):
    with_sft, ppo_only = two_runs
    run = load_run(with_sft)
    assert set(run.replays) == {"sft", "final"}
    assert set(load_run(ppo_only).replays) == {"final"}
    final = run.replays["final"]
    assert final["game"] == "numberline" and len(final["episodes"]) == 4  # eval.episodes < 8
    result = json.loads((with_sft / "eval.json").read_text())
    assert sum(e["success"] for e in final["episodes"]) == round(4 * result["success_rate"])
    for episode in final["episodes"]:
        assert len(episode["steps"]) == episode["length"] >= 1
        assert sum(step["reward"] for step in episode["steps"]) == episode["episode_return"]
        for step in episode["steps"]:
            assert (with_sft / "replays" / "final" / step["image"]).is_file()
            assert isinstance(step["reply"], str) and "number line" in step["prompt"]


def test_report_of_a_run(two_runs, capsys):
    with_sft, _ = two_runs
    assert main(["report", str(with_sft)]) == 0
    page_path = with_sft / "report" / "index.html"
    assert capsys.readouterr().out.strip() == f"report written to {page_path}"
    page = read_page(page_path)
    text = " ".join(page.texts)
    for heading in (
        "Evaluation",
        "Beside the paper",
        "Training curves",
        "Episode replays",
        "Config",
    ):
        assert heading in text
    assert "89.4%" in text and "GPT-4V" in text  # the paper's NumberLine row
    assert "thought_coef: 0.5" in text  # the config
    plots = [src for src in page.images if "curve" in src]
    assert len(plots) >= 6  # success, return, format errors, length, losses, KL ...
    run = load_run(with_sft)
    recorded = sum(len(e["steps"]) + 1 for stage in run.replays.values() for e in stage["episodes"])
    assert len(page.images) == len(plots) + recorded  # every turn's picture and the last
    first_reply = run.replays["final"]["episodes"][0]["steps"][0]["reply"]
    assert first_reply.strip() in text  # the model's full reply, as text


def copy_run(run_dir: Path, to: Path) -> Path:
    """The files a report reads, copied, to be changed."""
    ignore = shutil.ignore_patterns("checkpoints", "sft", "data", "report", "tensorboard")
    return Path(shutil.copytree(run_dir, to, ignore=ignore))


def test_a_reply_with_html_is_escaped(two_runs, tmp_path):
    copy = copy_run(two_runs[0], tmp_path / "run")
    replays_file = copy / "replays" / "final" / "replays.json"
    saved = json.loads(replays_file.read_text())
    evil = '<script>alert("x")</script></pre><b>bold</b> & {"action": "+"}'
    saved["episodes"][0]["steps"][0]["reply"] = evil
    replays_file.write_text(json.dumps(saved))
    page = read_page(write_report([copy], tmp_path / "out"))
    assert page.scripts == 0 and "<script>alert" not in page.html and "<b>bold" not in page.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;/pre&gt;&lt;b&gt;" in page.html
    assert evil in page.texts  # shown exactly as the model wrote it


def test_a_missing_replay_picture_is_said(two_runs, tmp_path):
    copy = copy_run(two_runs[0], tmp_path / "run")
    (copy / "replays" / "final" / "episode-00-step-00.png").unlink()
    page = read_page(write_report([copy]))  # every picture the page shows exists
    assert " ".join(page.texts).count("(picture missing)") == 1


def test_comparison_of_two_runs(two_runs, tmp_path, capsys):
    out = tmp_path / "compare"
    assert main(["report", *map(str, two_runs), "--out", str(out)]) == 0
    assert "comparison of 2 runs" in capsys.readouterr().out
    page = read_page(out / "index.html")
    text = " ".join(page.texts)
    assert "with-sft" in text and "lambda-0.1" in text
    # the settings that differ are columns; the ones that agree are not
    assert "ppo.thought_coef" in text and "sft.episodes" in text and "ppo.lr" not in text
    assert len(page.images) >= 6 and all("curve" in src for src in page.images)


def test_curves_overlay_runs_and_skip_missing_metrics(two_runs):
    both = [load_run(path) for path in two_runs]
    success = next(panel for panel in PANELS if panel.title == "Success rate")
    single, overlaid = curve(success, both[:1]), curve(success, both)
    assert single and overlaid and single != overlaid
    assert both[0].series("eval/success_rate")[0] == [0, 1]  # SFT at update 0, then PPO
    assert both[1].series("eval/success_rate")[0] == [1]  # no SFT stage
    nothing = type(success)("Nothing", (("charts/never_logged", "never"),))
    assert curve(nothing, both) is None


def test_report_of_a_run_not_finished(tmp_path):
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "config.yaml").write_text("game: blackjack\nppo:\n  updates: 5\n")
    page = read_page(write_report([tmp_path / "fresh"]))
    text = " ".join(page.texts)
    assert "not finished: 0 of 5 PPO updates logged" in text
    assert "No PPO update has been logged yet" in text and "No evaluation yet" in text
    assert "40.2%" in text  # the paper's Blackjack figure is still there


def test_report_errors_are_one_line(two_runs, tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.yaml").write_text("game: [unclosed\n")
    cases = [
        ([str(tmp_path / "missing")], "not a run directory (no config.yaml)"),
        ([str(tmp_path / "bad")], "a damaged run file"),
        ([str(two_runs[0]), str(two_runs[0])], "given twice"),
    ]
    for argv, message in cases:
        assert main(["report", *argv]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error and error.startswith("rlvlm report:")


CHROMIUM = Path("/usr/bin/chromium")  # Debian's; `make test` installs it where it is missing
#: As root and on a closed network, Chromium needs these to start quickly and quietly.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium: `make test` installs it")
def test_the_report_in_a_real_browser(two_runs, tmp_path):
    """Every picture loads, no script runs or fails, a replay opens, and a reply holding
    <script> shows as the text the model wrote."""
    from playwright.sync_api import sync_playwright

    copy = copy_run(two_runs[0], tmp_path / "run")
    replays_file = copy / "replays" / "final" / "replays.json"
    saved = json.loads(replays_file.read_text())
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)> {"action": "+"}'
    saved["episodes"][1]["steps"][0]["reply"] = evil  # in a replay that starts closed
    replays_file.write_text(json.dumps(saved))
    page_file = write_report([copy], tmp_path / "out")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        problems, dialogs = [], []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(page_file.resolve().as_uri(), wait_until="load")
        broken = page.evaluate(
            "[...document.images].filter(i => !i.complete || !i.naturalWidth).map(i => i.src)"
        )
        episodes = page.locator("details.episode")
        assert episodes.count() == len(saved["episodes"])
        closed = episodes.nth(1)
        assert closed.get_attribute("open") is None
        closed.locator("summary").first.click()
        assert closed.get_attribute("open") is not None
        reply = closed.locator("pre").nth(1)  # after the step's prompt
        assert reply.is_visible() and reply.inner_text() == evil
        browser.close()
    assert not broken and not problems and not dialogs, (broken, problems, dialogs)
