"""notebooks/quickstart.ipynb runs from top to bottom on the demo study."""

from __future__ import annotations

from tests.conftest import REPO


def test_quickstart_notebook_runs() -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "\n".join(str(o.get("text", "")) for o in outputs)
    assert "eligible: True" in text
    assert "labels_seg.dcm" in text and "report.json" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert not [o for o in outputs if o.get("output_type") == "error"]
