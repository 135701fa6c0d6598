"""gantry's pipeline as an Airflow DAG: one BashOperator per gantry command,
run on a worker that has gantry and the project checked out at PROJECT_DIR.

Each task's exit code gates the next: gantry exits 0 when its check passed,
1 when the verdict says no (the data failed validation, the candidate
regressed, the rollout rolled back) and 2 when it could not do its job.
Either non-zero ends the task as failed, so nothing downstream runs: a model
the gate stopped is never registered or deployed.

Paths are the project's (examples/llm-project's layout); gantry's outputs
travel as files under PROJECT_DIR/.gantry, as they do between CI jobs.
"""

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

PROJECT_DIR = os.environ.get("GANTRY_PROJECT_DIR", "/opt/llm-project")
MODEL = "support-bot"
REGISTRY = os.environ.get("GANTRY_REGISTRY", "file:.gantry/registry")

with DAG(
    dag_id="gantry_llm",
    description="validate-data, train, eval, eval-gate, register, deploy-canary",
    schedule="17 6 * * 1",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 0, "execution_timeout": timedelta(hours=6)},
    tags=["gantry", "llm"],
) as dag:
    # Every task runs in the project directory, with gantry's own exit codes.
    # (A bash_command ending in `.sh` is read by Airflow as a template file's
    # name: those below end with a space.)
    common = {"cwd": PROJECT_DIR, "append_env": True, "env": {"GANTRY_REGISTRY": REGISTRY}}

    validate = BashOperator(
        task_id="validate_data",
        bash_command="gantry --ci local validate-data --data data/ --eval-set evals/eval.jsonl",
        **common,
    )
    train = BashOperator(
        task_id="train",
        bash_command=(
            "gantry --ci local train --gpus auto --run-dir .gantry/train"
            " --data-lock .gantry/validate-data/data.lock -- bash scripts/train.sh "
        ),
        **common,
    )
    evaluate = BashOperator(
        task_id="eval",
        bash_command="bash scripts/eval.sh ",
        cwd=PROJECT_DIR,
        append_env=True,
        env={
            "GANTRY_MODEL_DIR": ".gantry/train/output",
            "GANTRY_EVAL_RESULTS": ".gantry/eval/results.jsonl",
        },
    )
    gate = BashOperator(
        task_id="eval_gate",
        bash_command=(
            "gantry --ci local eval-gate --candidate .gantry/eval/results.jsonl"
            " --baseline evals/baseline-results.jsonl --policy eval-policy.toml"
        ),
        **common,
    )
    register = BashOperator(
        task_id="register",
        bash_command=(
            f"gantry --ci local register --model-dir .gantry/train/output --name {MODEL}"
            ' --registry "$GANTRY_REGISTRY" --run-record .gantry/train/run.json'
            " --data-lock .gantry/validate-data/data.lock --gate-report .gantry/eval-gate/gate.json"
            " --eval-results .gantry/eval/results.jsonl --eval-set evals/eval.jsonl --alias candidate"
        ),
        **common,
    )
    deploy = BashOperator(
        task_id="deploy_canary",
        bash_command=(
            f'gantry --ci local deploy-canary --model {MODEL}@candidate --registry "$GANTRY_REGISTRY"'
            " --serve-command 'vllm serve {model_dir} --port {port}' --smoke-traffic evals/eval.jsonl"
        ),
        **common,
    )

    validate >> train >> evaluate >> gate >> register >> deploy
