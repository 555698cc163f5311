"""Progress output: no carriage-return floods outside a terminal; the one-line epoch summary."""

import io
import time

from emsiam import progress
from emsiam.progress import epoch_summary, format_duration, progress_bar


def test_bar_outside_a_terminal_prints_few_plain_lines(monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.05)
    log = io.StringIO()
    with progress_bar(total=200, desc="convert", unit="img", stream=log) as bar:
        for _ in range(200):
            bar.update()
            time.sleep(0.001)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 10 and lines[-1].startswith("convert: 100%")


def test_short_bar_outside_a_terminal_prints_nothing():
    log = io.StringIO()
    with progress_bar(total=5, stream=log) as bar:
        bar.update(5)
    assert log.getvalue() == ""


def test_epoch_summary():
    rec = {"epoch": 3, "step": 30, "train/loss": -0.61234, "time/pairs_per_s": 412.4, "time/epoch_s": 60.0,
           "eval/knn_top1": 48.25, "collapse/z_std_sqrt_d": 0.957}
    assert epoch_summary(rec, 10) == ("epoch 3/10  loss -0.6123  knn 48.25  z_std*sqrt(d) 0.96  412 pairs/s  "
                                      "ETA 7m00s")
    plain = {"epoch": 4, "train/loss": -0.7, "time/pairs_per_s": 400.0, "time/epoch_s": 30.0}
    assert epoch_summary(plain, 4, name="r") == "[r]  epoch 4/4  loss -0.7000  400 pairs/s  ETA 0s"
    assert format_duration(3725) == "1h02m" and format_duration(float("nan")) == "?"
