"""Reading trace folders as the shared data lays them out: a set's manifest is not a trace."""

from __future__ import annotations

from pathlib import Path

from forecaster import series


def test_a_folder_of_sets_reads_the_traces_and_skips_each_manifest(tmp_path: Path) -> None:
    for name in ("set-a", "set-b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.csv").write_text("file,entity,step_s\nm1.csv,m1,300\n")
        (folder / "m1.csv").write_text("ts,value\n0,1.5\n300,2.5\n600,3.5\n")
    traces = series.read_folder(tmp_path)
    assert sorted(trace.name for trace in traces) == ["set-a/m1", "set-b/m1"]
    assert [float(v) for v in traces[0].values] == [1.5, 2.5, 3.5]
