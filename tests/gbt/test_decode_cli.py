"""``station gbt decode``: one JSON object per message, transport-reassembled, from candump and from
python-can's other log formats; and ``station gbt diagram`` keeps docs/ in step with the transition table."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import can
import pytest

from drivers.gbt27930 import diagram
from station.cli import main
from tests.gbt.helpers import T1, load


def decode(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict], str]:
    code = main(["gbt", "decode", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_decode_the_complete_session(capsys: pytest.CaptureFixture[str], traces: Path) -> None:
    code, records, err = decode(capsys, str(traces / T1))
    assert code == 0 and err == ""
    names = Counter(r["name"] for r in records)
    assert names["BCS"] == 110 and names["BRM"] == 1 and names["BCP"] == 1 and names["BCL"] == 548
    assert sum(names.values()) == 1857 - 43 - 229 - 112 - 224 + 112  # minus foreign and TP frames, plus transfers
    brm = next(r for r in records if r["name"] == "BRM")
    assert brm["from"] == "bms" and brm["packets"] == 7 and brm["fields"]["vin"] == "L1NSPGH98NA196202"
    assert brm["t"] == pytest.approx(1703560144.080982)  # the time of the last DT
    bcl = next(r for r in records if r["name"] == "BCL")
    assert bcl == {"t": 1703560145.482817, "name": "BCL", "from": "bms", "id": "181056F4",
                   "fields": {"voltage_v": 426.1, "current_a": 20.0, "mode": 2}}
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)


def test_decode_reports_errors_and_foreign_frames(capsys: pytest.CaptureFixture[str], traces: Path,
                                                  tmp_path: Path) -> None:
    code, records, err = decode(capsys, str(traces / "candump2.log"))
    assert code == 0 and "record(s) with errors" in err
    assert any(r.get("error", "").startswith("transfer aborted") for r in records)
    log = tmp_path / "bad.log"
    log.write_text("(1.0) can0 181056F4#A510D80E\n(x) can0 1\n(2.0) can0 0070F4B5#0000B5\n")
    code, records, _ = decode(capsys, str(log), "--foreign")
    assert records[0]["error"] == "4 bytes, expected 5" and records[0]["data"] == "A510D80E"
    assert records[1] == {"line": 2, "error": "bad timestamp (x)"}
    assert records[2]["name"] is None and records[2]["id"] == "0070F4B5"
    assert main(["gbt", "decode", str(tmp_path / "missing.log")]) == 2


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".csv", ".trc", ".db", ".log.gz", ".asc.gz"])
def test_python_can_log_formats_decode_the_same(capsys: pytest.CaptureFixture[str], traces: Path,
                                                tmp_path: Path, suffix: str) -> None:
    frames = load(traces / T1)[:400]
    path = tmp_path / f"t1{suffix}"
    with can.Logger(str(path)) as logger:
        for lf in frames:
            logger.on_message_received(can.Message(timestamp=lf.t, arbitration_id=lf.frame.can_id,
                                                   data=lf.frame.data, is_extended_id=True))
    candump = tmp_path / "t1.log"
    candump.write_text("".join(f"({lf.t:.6f}) can0 {lf.frame}\n" for lf in frames))
    _, expected, _ = decode(capsys, str(candump))
    code, got, _ = decode(capsys, str(path))
    assert code == 0 and len(got) == len(expected) > 100
    for a, b in zip(got, expected):
        assert (a["name"], a.get("fields")) == (b["name"], b.get("fields"))
        assert a["t"] == pytest.approx(b["t"], abs=1e-3)


def test_logs_python_can_cannot_read_fail_clearly_and_a_corrupt_tail_keeps_what_came_before(
        capsys: pytest.CaptureFixture[str], traces: Path, tmp_path: Path) -> None:
    (tmp_path / "x.xyz").write_text("nothing")
    (tmp_path / "x.blf").write_bytes(b"garbage")
    for name, reason in (("x.xyz", 'unknown log format ".xyz"'), ("x.blf", "error: unpack requires")):
        code, records, err = decode(capsys, str(tmp_path / name))
        assert (code, records) == (2, []) and "cannot read" in err and reason in err, err
    frames = load(traces / T1)[:50]
    path = tmp_path / "cut.csv"
    with can.Logger(str(path)) as logger:
        for lf in frames:
            logger.on_message_received(can.Message(timestamp=lf.t, arbitration_id=lf.frame.can_id,
                                                   data=lf.frame.data, is_extended_id=True))
    path.write_text(path.read_text() + "1703560127.5,garbage\n")
    code, records, err = decode(capsys, str(path))
    assert code == 1 and "1 record(s) with errors" in err
    assert len(records) > 30 and all("error" not in r for r in records[:-1])
    assert records[-1]["error"].startswith("log unreadable after 50 frames: ValueError")


def test_published_state_diagram_matches_the_transition_table(repo: Path, tmp_path: Path) -> None:
    assert (repo / "docs" / "gbt27930-states.mmd").read_text() == diagram.mermaid()
    assert (repo / "docs" / "gbt27930-states.dot").read_text() == diagram.dot()
    doc = (repo / "docs" / "gbt27930.md").read_text()
    assert f"{diagram.BEGIN}\n```mermaid\n{diagram.mermaid()}```\n{diagram.END}" in doc
    assert main(["gbt", "diagram", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "gbt27930-states.mmd").read_text() == diagram.mermaid()


def test_decode_reads_stdin(capsys: pytest.CaptureFixture[str], traces: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO((traces / T1).read_text()))
    code, from_stdin, _ = decode(capsys, "-")
    _, from_file, _ = decode(capsys, str(traces / T1))
    assert code == 0 and from_stdin == from_file
