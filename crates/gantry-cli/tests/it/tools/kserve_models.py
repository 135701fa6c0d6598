"""Checks InferenceService objects against the KServe SDK's models.

The SDK's model classes are generated from KServe's own OpenAPI definition
(the upstream types behind its CRD): each class names its fields
(`attribute_map`) and their types (`openapi_types`). Every field of the
object must be one of them, with a value of that type, all the way down
(the API server would silently drop a misspelt field; this does not).

The SDK's package __init__ imports its model server (FastAPI, gRPC,
pandas…); only the generated models are needed, so the package is stood in
for and the model modules are imported by name.

Usage: python kserve_models.py FILE.json  (one object, or a list of them)
Prints one line per problem; exits 1 when there is any.
"""

import importlib
import importlib.util
import json
import pathlib
import re
import sys
import types

import kubernetes.client.models as k8s_models

spec = importlib.util.find_spec("kserve")
if spec is None or not spec.submodule_search_locations:
    sys.exit("the kserve SDK is not installed")
root = pathlib.Path(list(spec.submodule_search_locations)[0])
for name, path in (("kserve", root), ("kserve.models", root / "models")):
    stub = types.ModuleType(name)
    stub.__path__ = [str(path)]
    sys.modules[name] = stub


def model_class(name):
    if hasattr(k8s_models, name):
        return getattr(k8s_models, name)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    module = importlib.import_module("kserve.models." + snake)
    return getattr(module, name)


PRIMITIVES = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
    "datetime": (str,),
    "date": (str,),
}


def check(value, kind, path, problems):
    # openapi-generator writes list[X] and dict(str, X); newer ones List[X], Dict[str, X].
    list_of = re.fullmatch(r"list\[(.+)\]", kind, re.IGNORECASE)
    dict_of = re.fullmatch(r"dict[\(\[]str, (.+)[\)\]]", kind, re.IGNORECASE)
    if list_of:
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list of {list_of.group(1)}")
            return
        for index, item in enumerate(value):
            check(item, list_of.group(1), f"{path}[{index}]", problems)
    elif dict_of:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a map of {dict_of.group(1)}")
            return
        for key, item in value.items():
            check(item, dict_of.group(1), f"{path}.{key}", problems)
    elif kind in PRIMITIVES:
        if kind == "int" and isinstance(value, bool):
            problems.append(f"{path}: expected int, got bool")
        elif not isinstance(value, PRIMITIVES[kind]):
            problems.append(f"{path}: expected {kind}, got {type(value).__name__}")
    else:
        cls = model_class(kind)
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a {kind} object")
            return
        by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
        for key, item in value.items():
            attr = by_json.get(key)
            if attr is None:
                problems.append(f"{path}.{key}: not a field of {kind}")
                continue
            check(item, cls.openapi_types[attr], f"{path}.{key}", problems)


def main():
    data = json.loads(pathlib.Path(sys.argv[1]).read_text())
    objects = data if isinstance(data, list) else [data]
    problems = []
    for index, obj in enumerate(objects):
        check(obj, "V1beta1InferenceService", f"[{index}]", problems)
    for problem in problems:
        print(problem)
    sys.exit(1 if problems else 0)


main()
