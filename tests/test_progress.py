"""Progress where there is no terminal: plain lines, one per refresh, the latest state in each."""

from rlvlm import progress
from rlvlm.progress import progress_bar


def test_without_a_terminal_progress_is_plain_lines(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.0)
    bar = progress_bar(total=3, desc="ppo", unit="update")
    for update in range(3):
        bar.set_postfix(success=f"{update}0%", refresh=False)
        bar.update()
    bar.close()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err and len(lines) == len(set(lines)) == 3, err
    assert lines[0].startswith("ppo: 1/3 updates, 00:00 elapsed, ETA ")
    assert lines[0].endswith(", success=00%")
    assert lines[-1].startswith("ppo: 3/3 updates") and lines[-1].endswith(", success=20%")


def test_a_line_waits_for_the_interval_and_a_disabled_bar_is_silent(capsys):
    for _ in progress_bar(range(100), desc="sft"):  # far quicker than a minute
        pass
    for _ in progress_bar(range(100), desc="quiet", enabled=False):
        pass
    assert capsys.readouterr().err.splitlines() == ["sft: 100/100 steps, 00:00 elapsed, ETA 00:00"]


def test_a_stage_that_fails_before_its_first_step_prints_nothing(capsys):
    try:
        with progress_bar(total=2, desc="numberline api:gpt", unit="episode"):
            raise ConnectionError("unreachable")
    except ConnectionError:
        pass
    assert capsys.readouterr().err == ""


def test_a_redraw_without_news_prints_no_line(monkeypatch, capsys):
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.0)
    clock = iter(range(0, 1000, 30))  # each reading of the clock is 30 s later
    bar = progress_bar(total=3, desc="data", unit="episode")
    bar._time = lambda: next(clock)
    bar.start_t = bar.last_print_t = 0
    bar.update()
    bar.refresh()  # as tqdm's monitor thread does: only the clock moved
    bar.set_postfix(success="50%")
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["data: 1/3 episodes"] * 2, lines
    assert lines[-1].endswith("success=50%")
