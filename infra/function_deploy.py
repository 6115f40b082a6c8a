#!/usr/bin/env python3
"""What `cargo lambda deploy` needs to create one function as infra/template.yaml configures it.

    synctrail --backend aws --json setup --prefix dev > setup.json
    python3 infra/function_deploy.py processor --prefix dev --setup setup.json \\
        --role arn:aws:iam::123456789012:role/dev-processor --env-file processor.env

writes the function's environment to --env-file (the template's Globals plus the function's own variables; the
table, bucket and queues from `synctrail setup --json`, every parameter at its default unless --param NAME=VALUE
says otherwise) and prints the `cargo lambda deploy` command with the template's runtime, memory, timeout, tracing
and log retention. FUNCTION is the binary name (ingest, processor, sweeper, status, reprocess, reconcile): the template
function whose CodeUri is target/lambda/FUNCTION/bootstrap.zip. --json prints the command as a list plus what it
sets (what scripts/lambda-deploy-test.sh checks in moto).

Every value is single-quoted in the env file: cargo-lambda's env-file reader refuses unquoted values holding `=`,
spaces or parentheses and cuts them at `#`. Needs PyYAML. Exits non-zero with a one-line reason when the template
holds something it cannot express as cargo-lambda flags.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "template.yaml"
# The template's resources that `synctrail setup --json` creates, and the key of its report that names each.
SETUP_KEYS = {"EventsTable": "table", "PayloadBucket": "bucket", "IngestQueue": "queue_url",
              "DeadLetterQueue": "dlq_url"}
# What cargo-lambda always sets and has no flag for.
CARGO_LAMBDA_HANDLER = "bootstrap"


class Unsupported(Exception):
    """The template asks for something this helper (or cargo-lambda) cannot express: the message says what."""


def load_template(path: Path) -> dict[str, Any]:
    """The template with its short-form intrinsics (`!Ref X`, `!Sub s`, …) as their long forms."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", intrinsic)
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 - SafeLoader with intrinsics only


class Resolver:
    """Resolves the few intrinsics a function's settings use: Ref to a parameter or to a resource setup created,
    and Sub over parameters."""

    def __init__(self, template: dict[str, Any], params: dict[str, str], setup: dict[str, Any]):
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise Unsupported(f"--param {', '.join(unknown)}: not a parameter of the template")
        self.params.update(params)
        self.setup = setup

    def __call__(self, value: Any, what: str) -> str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, dict) and list(value) == ["Ref"]:
            name = value["Ref"]
            if name in self.params:
                return self.params[name]
            if name in SETUP_KEYS:
                found = self.setup.get(SETUP_KEYS[name])
                if not found:
                    raise Unsupported(f"{what}: the setup report has no {SETUP_KEYS[name]!r} (for {name})")
                return str(found)
            raise Unsupported(f"{what}: Ref {name} is neither a parameter nor a resource `synctrail setup` creates")
        if isinstance(value, dict) and list(value) == ["Fn::Sub"] and isinstance(value["Fn::Sub"], str):
            text = value["Fn::Sub"]
            for name, param in self.params.items():
                text = text.replace("${" + name + "}", param)
            if "${" in text:
                raise Unsupported(f"{what}: cannot resolve {value['Fn::Sub']!r} offline")
            return text
        raise Unsupported(f"{what}: cannot resolve {json.dumps(value)} offline")


def find_function(template: dict[str, Any], binary: str) -> tuple[str, dict[str, Any]]:
    """The template function whose code is target/lambda/<binary>/bootstrap.zip."""
    found = [(name, r) for name, r in template.get("Resources", {}).items()
             if r.get("Type") == "AWS::Serverless::Function"
             and str(r.get("Properties", {}).get("CodeUri", "")).endswith(f"lambda/{binary}/bootstrap.zip")]
    if len(found) != 1:
        names = sorted(str(r.get("Properties", {}).get("CodeUri", "")).split("/")[-2]
                       for r in template.get("Resources", {}).values()
                       if r.get("Type") == "AWS::Serverless::Function")
        raise Unsupported(f"{len(found)} template functions are built from target/lambda/{binary}/bootstrap.zip; "
                          f"the template's functions are: {', '.join(names)}")
    return found[0]


def plan(template: dict[str, Any], binary: str, prefix: str, setup: dict[str, Any],
         params: dict[str, str]) -> dict[str, Any]:
    """What the function gets: its name, runtime, handler, memory, timeout, tracing, log retention, environment."""
    logical, resource = find_function(template, binary)
    resolve = Resolver(template, {**params, "NamePrefix": prefix}, setup)
    props = resource.get("Properties", {})
    globals_ = template.get("Globals", {}).get("Function", {})

    def setting(key: str) -> Any:
        return props.get(key, globals_.get(key))

    handler = setting("Handler")
    if handler != CARGO_LAMBDA_HANDLER:
        raise Unsupported(f"{logical}: handler {handler!r}; cargo lambda deploy always sets {CARGO_LAMBDA_HANDLER!r}")
    variables = {**(globals_.get("Environment") or {}).get("Variables", {}),
                 **(props.get("Environment") or {}).get("Variables", {})}
    environment = {name: resolve(value, f"{logical} environment {name}") for name, value in variables.items()}
    out: dict[str, Any] = {
        "function": resolve(props.get("FunctionName"), f"{logical} FunctionName"),
        "binary": binary,
        "runtime": resolve(setting("Runtime"), f"{logical} Runtime"),
        "handler": handler,
        "tracing": resolve(setting("Tracing") or "PassThrough", f"{logical} Tracing"),
        "environment": environment,
    }
    for key, field in (("MemorySize", "memory"), ("Timeout", "timeout")):
        if setting(key) is not None:
            out[field] = int(resolve(setting(key), f"{logical} {key}"))
    depends = resource.get("DependsOn", [])
    for group in [depends] if isinstance(depends, str) else depends:
        log_group = template["Resources"].get(group, {})
        if log_group.get("Type") != "AWS::Logs::LogGroup":
            continue
        group_props = log_group.get("Properties", {})
        if resolve(group_props.get("LogGroupName"), f"{group} LogGroupName") == f"/aws/lambda/{out['function']}":
            out["log_retention"] = int(resolve(group_props.get("RetentionInDays"), f"{group} RetentionInDays"))
    return out


def env_file_text(environment: dict[str, str]) -> str:
    """KEY='value' lines, as cargo-lambda's env-file reader takes them literally."""
    lines = []
    for name, value in sorted(environment.items()):
        if "'" in value or "\n" in value:
            raise Unsupported(f"{name}={value!r}: an env file value cannot hold a single quote or a newline")
        lines.append(f"{name}='{value}'")
    return "\n".join(lines) + "\n"


def command(function: dict[str, Any], role: str, env_file: str) -> list[str]:
    """The `cargo lambda deploy` words that create the function as planned."""
    words = ["cargo", "lambda", "deploy", "--binary-name", function["binary"], "--iam-role", role,
             "--env-file", env_file, "--runtime", function["runtime"], "--tracing", function["tracing"].lower()]
    for field in ("memory", "timeout", "log_retention"):
        if field in function:
            words += [f"--{field.replace('_', '-')}", str(function[field])]
    return words + [function["function"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary", metavar="FUNCTION", help="ingest, processor, sweeper, status, reprocess or reconcile")
    parser.add_argument("--prefix", required=True, help="the NamePrefix: the function is named <prefix>-FUNCTION")
    parser.add_argument("--setup", required=True, help="what `synctrail --backend aws --json setup --prefix PREFIX` printed")
    parser.add_argument("--role", required=True, help="the function's execution role (ARN)")
    parser.add_argument("--env-file", required=True, help="where to write the function's environment")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a template parameter other than its default (repeatable)")
    parser.add_argument("--template", default=str(DEFAULT_TEMPLATE))
    parser.add_argument("--json", action="store_true", help="print the command and what it sets as JSON")
    args = parser.parse_args()
    try:
        params = {}
        for pair in args.param:
            name, sep, value = pair.partition("=")
            if not sep:
                raise Unsupported(f"--param {pair!r}: expected NAME=VALUE")
            params[name] = value
        setup = json.loads(Path(args.setup).read_text())
        function = plan(load_template(Path(args.template)), args.binary, args.prefix, setup, params)
        Path(args.env_file).write_text(env_file_text(function["environment"]))
        words = command(function, args.role, args.env_file)
    except (Unsupported, OSError, ValueError) as error:
        print(f"function_deploy: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**function, "role": args.role, "command": words}, indent=2, sort_keys=True))
    else:
        print(shlex.join(words))
    return 0


if __name__ == "__main__":
    sys.exit(main())
