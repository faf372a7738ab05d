"""Progress bars and log lines for people, and the quiet console of long commands."""

from __future__ import annotations

import io
import logging

import pytest

from flows.console import quiet
from flows.progress import Progress, counted, duration


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (44.6, "45s"), (185, "3m05s"),
                                          (7620, "2h07m"), (-3, "0s")])
def test_durations_read_at_a_useful_precision(seconds, text):
    assert duration(seconds) == text


def test_off_a_terminal_each_stage_prints_plain_lines_with_its_unit_and_an_eta():
    out = io.StringIO()
    p = Progress(4, stream=out, every_s=0.0, label="funnel", unit="batches")
    p.advance()
    p.advance(3)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert lines[0].startswith("funnel: 1/4 batches; ") and "eta ?" in lines[0]  # no rate yet
    assert lines[1].startswith("funnel: 4/4 batches; ") and lines[1].endswith("eta 0s")
    p.finish()  # already complete: nothing more
    assert len(out.getvalue().splitlines()) == 2


def test_on_a_terminal_one_bar_is_rewritten_and_a_gated_stage_still_ends_at_100_percent():
    out = Terminal()
    p = Progress(6, stream=out, label="benchmark", unit="runs")
    p.advance()
    p.advance()
    assert out.getvalue().count("\rbenchmark [") == 2 and "\n" not in out.getvalue()
    assert " 2/6 " in out.getvalue() and "runs/s eta " in out.getvalue()
    p.finish()  # e.g. a program that ignores lr trained once per seed, not once per rate
    assert out.getvalue().endswith("\n") and " 6/6 " in out.getvalue()


def test_the_search_report_keeps_its_line_and_a_grid_that_grew_raises_the_total():
    out = io.StringIO()
    p = Progress(10, stream=out, every_s=1e9)
    p.update(10, -0.5, 0.25)
    assert out.getvalue().startswith(
        "evolve: 10/10 candidates; best fitness -0.5; cache hit rate 25.0%; ")
    grown = Progress(2, stream=io.StringIO(), every_s=0.0, label="benchmark", unit="runs")
    grown.advance(3)
    assert "3/3 runs" in grown.stream.getvalue()


def test_counted_advances_once_per_call_and_returns_the_result():
    out = io.StringIO()
    p = Progress(3, stream=out, every_s=0.0, label="funnel", unit="batches")
    f = counted(lambda x: x * 2, p)
    assert [f(1), f(2)] == [2, 4]
    assert out.getvalue().splitlines()[-1].startswith("funnel: 2/3 batches")

    def g():
        return 1

    assert counted(g, None) is g


LIBRARY = "lionforge_tests.library"  # logs INFO to the root's handlers, as Prefect's loggers do


@pytest.fixture
def console():
    """A console handler on the root logger, as Prefect installs one; afterwards every handler
    of the root and mlflow loggers is as it was (pytest's own capture handlers included)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    loggers = [logging.getLogger(), logging.getLogger("mlflow")]
    before = {lg: {h: h.level for h in lg.handlers} for lg in loggers}
    loggers[0].addHandler(handler)
    library = logging.getLogger(LIBRARY)
    library.setLevel(logging.INFO)
    yield stream, handler
    loggers[0].removeHandler(handler)
    for lg in loggers:
        for h in list(lg.handlers):
            if h not in before[lg]:  # a log file quiet() left for the process's exit
                lg.removeHandler(h)
                h.close()
        for h, level in before[lg].items():
            h.setLevel(level)


def test_quiet_sends_library_info_to_the_log_file_and_keeps_warnings_on_the_console(
        console, tmp_path):
    stream, handler = console
    log = tmp_path / "run" / "lionforge.log"
    task_runs = logging.getLogger(LIBRARY)
    with quiet(log_file=log):
        task_runs.info("Finished in state Completed()")
        task_runs.warning("a task was retried")
    assert "Finished in state" not in stream.getvalue()
    assert "a task was retried" in stream.getvalue()
    written = log.read_text()
    assert f"INFO {LIBRARY}: Finished in state Completed()" in written
    assert f"WARNING {LIBRARY}: a task was retried" in written
    # afterwards the console is as it was, and the file is no longer written
    assert handler.level == logging.NOTSET
    task_runs.info("after")
    assert "after" in stream.getvalue() and "after" not in log.read_text()


def test_verbose_leaves_the_console_as_it_was(console):
    stream, _ = console
    with quiet(verbose=True):
        logging.getLogger(LIBRARY).info("Finished in state Completed()")
    assert "Finished in state Completed()" in stream.getvalue()


def test_for_a_whole_process_it_stays_quiet_after_the_block(console, tmp_path):
    stream, _ = console
    log = tmp_path / "lionforge.log"
    with quiet(log_file=log, until_exit=True):
        pass
    logging.getLogger(LIBRARY).info("Stopping temporary server")  # e.g. Prefect's, at exit
    assert "Stopping" not in stream.getvalue() and "Stopping" in log.read_text()
