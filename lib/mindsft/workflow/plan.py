"""A run's memory plan for the workflow: `results/{run}/plan.json`, the plan as
`mindsft plan` prints it, and the report's table."""

import json
from pathlib import Path

from mindsft.atomic import atomic_output
from mindsft.plan.planner import make_plan
from mindsft.plan.report import format_plan, plan_json
from mindsft.workflow.plots import plan_html


def write_run_plan(config_yaml, devices: int, seq_length: int, json_out, text_out, html_out):
    """Plan the run's resolved finetune YAML on `devices` devices at `seq_length`
    (the YAML's context.max_device_memory, if any, is the budget)."""
    plan = make_plan(config_yaml, devices=devices, seq_length=seq_length)
    doc = plan_json(plan)
    with atomic_output(json_out) as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=2) + "\n")
    with atomic_output(text_out) as tmp:
        Path(tmp).write_text(format_plan(plan) + "\n")
    plan_html(doc, html_out, title=Path(json_out).parent.name)
