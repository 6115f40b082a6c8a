#!/usr/bin/env python3
"""Helpers of scripts/lambda-deploy-test.sh: `cargo lambda deploy` against moto, and the docs that describe it.

Subcommands (each exits non-zero with a one-line reason on failure):

  check-docs --root DIR          every `cargo lambda build` shown with options in the docs (*.md, the Makefile's
                                 comments) keeps --disable-optimizations, as the Makefile's LAMBDA_BUILD does; and
                                 infra/README.md lists the environment variables the template gives the functions
  elf --machine M --out FILE     a minimal ELF64 header for machine arm64 or x86_64 (what cargo-lambda reads the
                                 architecture from)
  role --endpoint E --name N     create an execution role Lambda may assume; print its ARN
  verify --endpoint E --plan P --zip Z --binary B --arch A
                                 the function of plan P (infra/function_deploy.py --json) exists as planned:
                                 runtime, handler, role, memory, timeout, tracing, architecture A, exactly the
                                 planned environment, log retention, and code = zip Z holding only binary B as an
                                 executable `bootstrap`
  snapshot --endpoint E --function F --out FILE
                                 a function's configuration
  verify-update --endpoint E --before FILE --zip Z
                                 after a code-only deploy: the code is zip Z, every setting as in FILE
  cleanup --endpoint E --prefix P
                                 delete the functions, log groups and roles named P-*

Needs boto3; every AWS call goes to --endpoint (a loopback moto server).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import struct
import sys
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from function_deploy import load_template  # noqa: E402
from moto_stack import Failure, clients  # noqa: E402

# The settings a code-only deploy must leave as they were.
SETTINGS = ["Runtime", "Handler", "Role", "MemorySize", "Timeout", "TracingConfig", "Architectures", "Environment",
            "Layers", "Description", "EphemeralStorage", "PackageType"]
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
ELF_MACHINES = {"arm64": 183, "x86_64": 62}
PRUNED_DIRS = {"target", "node_modules"}


# ----------------------------------------------------------------------------------------------- docs


def shown_build_commands(text: str) -> list[tuple[int, str]]:
    """Each `cargo lambda build` in the text with what follows it: to the closing backtick inside inline code,
    else to the end of the (backslash-continued) line."""
    found = []
    for match in re.finditer(r"cargo[ -]lambda build", text):
        start = match.start()
        line_start = text.rfind("\n", 0, start) + 1
        if text.count("`", line_start, start) % 2 == 1:
            end = text.find("`", start)
        else:
            end = start
            while True:
                end = text.find("\n", end)
                if end == -1 or not text[:end].rstrip().endswith("\\"):
                    break
                end += 1
        command = text[start:] if end == -1 else text[start:end]
        found.append((text.count("\n", 0, start) + 1, command))
    return found


def doc_files(root: Path) -> list[Path]:
    files = [root / "Makefile"]
    for directory, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in PRUNED_DIRS and not d.startswith("."))
        files += [Path(directory) / n for n in sorted(names) if n.endswith(".md")]
    return [f for f in files if f.is_file()]


def template_env_names(template: dict[str, Any]) -> set[str]:
    names = set((template.get("Globals", {}).get("Function", {}).get("Environment") or {}).get("Variables", {}))
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            names |= set((resource.get("Properties", {}).get("Environment") or {}).get("Variables", {}))
    return names


def readme_env_names(readme: str) -> set[str]:
    """The variables in infra/README.md's paragraph that starts with "Every function:" (`_X` is SYNCTRAIL_X)."""
    match = re.search(r"^Every function:.*?(?:\n\s*\n|\Z)", readme, re.S | re.M)
    if not match:
        raise Failure('infra/README.md has no paragraph starting "Every function:" that lists the environment')
    tokens = re.findall(r"`(SYNCTRAIL_[A-Z0-9_]+|_[A-Z0-9_]+|RUST_LOG)`", match.group(0))
    return {f"SYNCTRAIL{t}" if t.startswith("_") else t for t in tokens}


def cmd_check_docs(args: argparse.Namespace) -> None:
    root = Path(args.root)
    problems = []
    makefile = (root / "Makefile").read_text()
    definition = re.search(r"^LAMBDA_BUILD\s*:?=(.*?)(?<!\\)\n", makefile, re.S | re.M)
    if not definition:
        problems.append("the Makefile defines no LAMBDA_BUILD (the one build command the docs point to)")
    elif "--disable-optimizations" not in definition.group(1):
        problems.append("the Makefile's LAMBDA_BUILD lacks --disable-optimizations (cargo-lambda's optimizations "
                        "set panic = \"abort\": one record's panic would fail the whole batch)")
    checked = 0
    for path in doc_files(root):
        for line, command in shown_build_commands(path.read_text(errors="replace")):
            checked += 1
            if re.search(r"\s-", command) and "--disable-optimizations" not in command:
                problems.append(f"{path.relative_to(root)}:{line} shows `{command.strip()}` without "
                                f"--disable-optimizations: point to `make build` (the Makefile's LAMBDA_BUILD)")
    in_template = template_env_names(load_template(root / "infra" / "template.yaml"))
    in_readme = readme_env_names((root / "infra" / "README.md").read_text())
    if in_readme != in_template:
        problems.append(f"infra/README.md's function environment differs from the template's: missing "
                        f"{sorted(in_template - in_readme)}, not in the template {sorted(in_readme - in_template)}")
    if problems:
        raise Failure("; ".join(problems))
    print(f"docs: {checked} mention(s) of `cargo lambda build` keep --disable-optimizations; infra/README.md lists "
          f"the {len(in_template)} environment variables the template sets")


# ----------------------------------------------------------------------------------------------- moto


def cmd_elf(args: argparse.Namespace) -> None:
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, version 1, System V
    header = struct.pack("<HHIQQQIHHHHHH", 2, ELF_MACHINES[args.machine], 1, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0)
    Path(args.out).write_bytes(ident + header)
    os.chmod(args.out, 0o755)


def cmd_role(args: argparse.Namespace) -> None:
    (iam,) = clients(args.endpoint, "iam")
    role = iam.create_role(RoleName=args.name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))["Role"]
    print(role["Arn"])


def code_sha256(path: str) -> str:
    return base64.b64encode(hashlib.sha256(Path(path).read_bytes()).digest()).decode()


def configuration(lam: Any, function: str) -> dict[str, Any]:
    try:
        config = lam.get_function(FunctionName=function)["Configuration"]
    except lam.exceptions.ResourceNotFoundException as error:
        raise Failure(f"function {function} does not exist after cargo lambda deploy: {error}") from error
    return config


def cmd_verify(args: argparse.Namespace) -> None:
    lam, logs = clients(args.endpoint, "lambda", "logs")
    plan = json.loads(Path(args.plan).read_text())
    name = plan["function"]
    config = configuration(lam, name)
    problems = []

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{what} is {actual!r}, expected {wanted!r}")

    expect("runtime", config.get("Runtime"), plan["runtime"])
    expect("handler", config.get("Handler"), plan["handler"])
    expect("role", config.get("Role"), plan["role"])
    for field, key in (("memory", "MemorySize"), ("timeout", "Timeout")):
        if field in plan:
            expect(field, config.get(key), plan[field])
    expect("tracing", (config.get("TracingConfig") or {}).get("Mode"), plan["tracing"])
    expect("architectures (read from the binary)", config.get("Architectures"), [args.arch])
    environment = (config.get("Environment") or {}).get("Variables", {})
    for key in sorted(set(environment) | set(plan["environment"])):
        expect(f"environment {key}", environment.get(key), plan["environment"].get(key))
    expect("code (SHA-256 of the zip)", config.get("CodeSha256"), code_sha256(args.zip))
    with zipfile.ZipFile(args.zip) as archive:
        entries = archive.infolist()
        expect("files in the zip", [e.filename for e in entries], ["bootstrap"])
        if entries and entries[0].filename == "bootstrap":
            mode = entries[0].external_attr >> 16
            if not mode & 0o100:
                problems.append(f"bootstrap in the zip is not executable (mode {oct(mode)})")
            if archive.read("bootstrap") != Path(args.binary).read_bytes():
                problems.append(f"bootstrap in the zip is not {args.binary}")
    if "log_retention" in plan:
        groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]
        retention = [g.get("retentionInDays") for g in groups if g["logGroupName"] == f"/aws/lambda/{name}"]
        expect("log group retention", retention, [plan["log_retention"]])
    if problems:
        raise Failure(f"{name}: " + "; ".join(problems))
    print(f"{name}: {config['Runtime']}, {config['Architectures'][0]}, handler {config['Handler']}, "
          f"{config['MemorySize']} MB, {config['Timeout']} s, tracing {plan['tracing']}, "
          f"{len(environment)} environment variables, logs kept {plan.get('log_retention', '-')} days, "
          f"code {config.get('CodeSize')} bytes zipped")


def cmd_snapshot(args: argparse.Namespace) -> None:
    (lam,) = clients(args.endpoint, "lambda")
    config = configuration(lam, args.function)
    config.pop("ResponseMetadata", None)
    Path(args.out).write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")


def cmd_verify_update(args: argparse.Namespace) -> None:
    (lam,) = clients(args.endpoint, "lambda")
    before = json.loads(Path(args.before).read_text())
    name = before["FunctionName"]
    after = configuration(lam, name)
    problems = []
    wanted = code_sha256(args.zip)
    if after.get("CodeSha256") != wanted:
        problems.append(f"the code is {after.get('CodeSha256')}, not the deployed zip's {wanted}")
    if before.get("CodeSha256") == wanted:
        problems.append("the update deployed the same zip as before: the test proves nothing")
    for key in SETTINGS:
        if after.get(key) != before.get(key):
            problems.append(f"{key} changed from {before.get(key)!r} to {after.get(key)!r}")
    if problems:
        raise Failure(f"{name}, code-only deploy: " + "; ".join(problems))
    print(f"{name}: code replaced ({after.get('CodeSize')} bytes zipped), "
          f"{len(SETTINGS)} settings as before (architecture {after['Architectures'][0]})")


def cmd_cleanup(args: argparse.Namespace) -> None:
    lam, logs, iam = clients(args.endpoint, "lambda", "logs", "iam")
    mine = f"{args.prefix}-"
    functions = [f["FunctionName"] for page in lam.get_paginator("list_functions").paginate()
                 for f in page["Functions"] if f["FunctionName"].startswith(mine)]
    for name in functions:
        lam.delete_function(FunctionName=name)
    groups = logs.describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{mine}")["logGroups"]
    for group in groups:
        logs.delete_log_group(logGroupName=group["logGroupName"])
    roles = [r["RoleName"] for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(mine)]
    for role in roles:
        iam.delete_role(RoleName=role)
    print(f"deleted {len(functions)} function(s), {len(groups)} log group(s), {len(roles)} role(s) named {mine}*")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check-docs")
    p.add_argument("--root", required=True)
    p.set_defaults(run=cmd_check_docs)
    p = sub.add_parser("elf")
    p.add_argument("--machine", required=True, choices=sorted(ELF_MACHINES))
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_elf)
    p = sub.add_parser("role")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--name", required=True)
    p.set_defaults(run=cmd_role)
    p = sub.add_parser("verify")
    for flag in ("--endpoint", "--plan", "--zip", "--binary", "--arch"):
        p.add_argument(flag, required=True)
    p.set_defaults(run=cmd_verify)
    p = sub.add_parser("snapshot")
    for flag in ("--endpoint", "--function", "--out"):
        p.add_argument(flag, required=True)
    p.set_defaults(run=cmd_snapshot)
    p = sub.add_parser("verify-update")
    for flag in ("--endpoint", "--before", "--zip"):
        p.add_argument(flag, required=True)
    p.set_defaults(run=cmd_verify_update)
    p = sub.add_parser("cleanup")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--prefix", required=True)
    p.set_defaults(run=cmd_cleanup)
    args = parser.parse_args()
    try:
        args.run(args)
    except Failure as failure:
        print(f"lambda_deploy_check: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
