"""Each run's memory plan in the workflow: `results/{run}/plan.json` and
`plan.txt` for the run's devices (workers x nodes) and seq_length, and a table in
the run's category of the Snakemake report. The plan needs only the run's
resolved YAML, so even the 7B runs are planned here, without their weights."""

import json
import re
import zipfile


def test_each_run_is_planned_for_its_devices_and_shown_in_its_report_category(
    tmp_path, write_config, snakemake
):
    write_config(tmp_path)
    targets = ["results/report/tiny_lora/plan.html", "results/lora_llama2_7b/plan.json"]
    snakemake(tmp_path, "--cores", "1", *targets)
    tiny = json.loads((tmp_path / "results/tiny_lora/plan.json").read_text())
    assert (tiny["run"]["devices"], tiny["run"]["seq_length"]) == (2, 96)
    assert tiny["backend"] == "CPU" and tiny["device_memory_bytes"] is None
    assert "verdict: needs" in (tmp_path / "results/tiny_lora/plan.txt").read_text()

    big = json.loads((tmp_path / "results/lora_llama2_7b/plan.json").read_text())
    assert (big["run"]["devices"], big["run"]["seq_length"]) == (8, 4096)
    assert big["device_memory_bytes"] == 59 * 2**30  # the YAML's context.max_device_memory
    assert big["verdict"]["fits"] is False
    assert "DOES NOT FIT" in (tmp_path / "results/lora_llama2_7b/plan.txt").read_text()

    snakemake(tmp_path, "--report", "report.zip", targets[0])
    with zipfile.ZipFile(tmp_path / "report.zip") as zf:
        page = zf.read("report/report.html").decode()
        tables = [n for n in zf.namelist() if n.endswith("/plan.html")]
    categories = json.loads(re.search(r"var categories = (\{.*?\});", page).group(1))
    assert categories["tiny_lora"]["memory plan"] == ["results/report/tiny_lora/plan.html"]
    assert len(tables) == 1
