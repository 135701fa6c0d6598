"""gantry's pipeline on Kubeflow Pipelines.

validate-data -> train -> eval -> eval-gate -> (the gate's verdict) ->
register -> deploy-canary, each step a gantry component generated from
gantry's own command line (components/*.yaml, `cargo xtask codegen`), all
sharing one volume, the PVC named by --workspace-pvc, mounted at /workspace.

    pip install kfp==2.17.3 kfp-kubernetes==2.17.3
    python examples/kubeflow/pipeline.py gantry-llm.yaml   # then upload it

A verdict that says no does not fail its task: it is the task's `verdict`
output, and the pipeline only registers and deploys what the gate passed.
An error (gantry's exit 2) fails the task, and the run stops there.
"""

import pathlib
import sys

from kfp import compiler, components, dsl, kubernetes

HERE = pathlib.Path(__file__).resolve().parent
WORKSPACE = "/workspace"


def component(name):
    """The gantry component components/NAME.yaml."""
    return components.load_component_from_file(str(HERE / "components" / f"{name}.yaml"))


validate_data = component("validate-data")
train = component("train-on-runner")
evaluate = component("eval")
eval_gate = component("eval-gate")
register = component("register-model")
deploy_canary = component("deploy-canary")


@dsl.pipeline(
    name="gantry-llm",
    description="validate-data, train, eval, eval-gate; register and deploy-canary only when the gate passes",
)
def llm_pipeline(
    data: str = "data/",
    eval_set: str = "evals/eval.jsonl",
    train_command: str = "bash scripts/train.sh",
    endpoint: str = "http://candidate.models.svc:8000/v1",
    model_name: str = "support-bot",
    registry: str = "oci://registry.models.svc:5000/models",
    baseline: str = "registry:support-bot@production",
    policy: str = "eval-policy.toml",
    serve_command: str = "vllm serve {model_dir} --port {port} --served-model-name support-bot",
    router: str = "http://gantry-router.models.svc:8081",
    workspace_pvc: str = "gantry-workspace",
):
    data_task = validate_data(data=data, eval_set=eval_set, publish="summary")
    train_task = train(
        command=train_command,
        data_lock=data_task.outputs["lock"],
        gpus="auto",
    )
    eval_task = evaluate(
        endpoint=endpoint,
        model=model_name,
        dataset=eval_set,
        out=".gantry/eval",
        publish="summary",
    ).after(train_task)
    gate_task = eval_gate(
        candidate=eval_task.outputs["results"],
        baseline=baseline,
        registry=registry,
        policy=policy,
        publish="summary",
    )
    tasks = [data_task, train_task, eval_task, gate_task]
    with dsl.If(gate_task.outputs["verdict"] != "fail", name="the-gate-passed"):
        register_task = register(
            model_dir=train_task.outputs["model_dir"],
            name=model_name,
            registry=registry,
            run_record=train_task.outputs["run_record"],
            data_lock=data_task.outputs["lock"],
            gate_report=gate_task.outputs["report"],
            eval_results=eval_task.outputs["results"],
            eval_set=eval_set,
            alias="candidate",
        )
        deploy_task = deploy_canary(
            model=register_task.outputs["reference"],
            registry=registry,
            serve_command=serve_command,
            router=router,
            smoke_traffic=eval_set,
            publish="summary",
        )
        tasks += [register_task, deploy_task]
    for task in tasks:
        kubernetes.mount_pvc(task, pvc_name=workspace_pvc, mount_path=WORKSPACE)
        task.set_caching_options(False)


if __name__ == "__main__":
    output = sys.argv[1] if len(sys.argv) > 1 else "gantry-llm.yaml"
    compiler.Compiler().compile(llm_pipeline, package_path=output)
    print(output)
