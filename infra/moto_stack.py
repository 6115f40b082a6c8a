#!/usr/bin/env python3
"""Helpers of scripts/infra-test.sh: check infra/template.yaml offline and create it as a stack in moto.

Subcommands (each exits non-zero with a one-line reason on failure):

  check-skips TEMPLATE                 every checkov skip in the template carries a written reason
  check-rules TEMPLATE                 the template's Rules refuse exactly the parameter sets that give some
                                       function an environment its cold start refuses (offline)
  check-alarms TEMPLATE --repo DIR     every alarm on the functions' metrics watches a metric the function it names
                                       emits (read from functions/<binary>/src/metrics.rs); a metric-math alarm
                                       uses every metric it reads, each FILLed (offline)
  translate TEMPLATE OUT --code-bucket B
                                       expand the SAM transform offline (aws-sam-translator), with each
                                       function's CodeUri pointing at s3://B/<function>.zip
  deploy --template OUT ...            upload placeholder code zips, create the stack, wait, write its outputs
  apply-ignored --template OUT ...     put on the resources what moto's CloudFormation ignores (TTL, point-in-time
                                       recovery, S3 lifecycle, public access block, EventBridge Scheduler schedules)
  verify --template OUT ...            the stack's names, functions, event source mapping, schedule and queue
                                       timing are what the template promises
  describe ... --out FILE              the settings the code relies on of one table/bucket/queue/DLQ (queues by
                                       URL or name), with names
                                       abstracted, to compare a stack with what `synctrail setup` creates
  diff A B --what TEXT                 two `describe` files must be equal
  resources --out FILE                 the tables, buckets and queues that exist
  check-demo REPORT --outputs FILE     the demo converged on the stack's own resources

Needs boto3 (translate also aws-sam-translator); every AWS call goes to --endpoint (a loopback moto server).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import time
import zipfile
from pathlib import Path
from typing import Any


class Failure(Exception):
    """A check did not pass: the message says which and why."""


# ----------------------------------------------------------------------------------------------- helpers


def clients(endpoint: str, *services: str) -> list[Any]:
    import boto3
    from botocore.config import Config

    if not re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\]):[0-9]+/?$", endpoint):
        raise Failure(f"--endpoint {endpoint!r} is not a loopback http endpoint; refusing to touch it")
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=60,
                    s3={"addressing_style": "path"})
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    return [session.client(s, endpoint_url=endpoint, config=config) for s in services]


def load_yaml(path: str) -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(Path(path).read_text())


def load_json(path: str) -> Any:
    return json.loads(Path(path).read_text())


def write_json(path: str, value: Any) -> None:
    Path(path).write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template.get("Resources", {}).items() if r.get("Type") == kind}


def params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise Failure(f"--param {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------------- check-skips


def cmd_check_skips(args: argparse.Namespace) -> None:
    template = load_yaml(args.template)
    count, missing = 0, []
    for name, resource in template.get("Resources", {}).items():
        skips = (resource.get("Metadata") or {}).get("checkov", {}).get("skip", [])
        for skip in skips:
            count += 1
            if not isinstance(skip, dict) or not str(skip.get("comment", "")).strip() or not skip.get("id"):
                missing.append(f"{name}: {skip!r}")
    if missing:
        raise Failure("checkov skips without a written reason (give each an id and a comment): " + "; ".join(missing))
    print(f"checkov skips: {count}, each with a written reason")


# ----------------------------------------------------------------------------------------------- check-rules


def evaluate(expr: Any, params: dict[str, str], what: str) -> Any:
    """A rule's condition or assertion (long-form intrinsics) with the parameters `params`; anything else is
    refused, so a rule using a function this does not know fails the check instead of passing it."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and len(expr) == 1:
        ((name, arg),) = expr.items()
        if name == "Ref" and arg in params:
            return params[arg]
        if name == "Fn::Equals" and isinstance(arg, list) and len(arg) == 2:
            return str(evaluate(arg[0], params, what)) == str(evaluate(arg[1], params, what))
        if name == "Fn::Not" and isinstance(arg, list) and len(arg) == 1:
            return not evaluate(arg[0], params, what)
        if name in ("Fn::And", "Fn::Or") and isinstance(arg, list):
            values = [evaluate(a, params, what) for a in arg]
            return all(values) if name == "Fn::And" else any(values)
    raise Failure(f"{what}: cannot evaluate {json.dumps(expr)} offline; teach infra/moto_stack.py check-rules")


def rule_refusals(template: dict[str, Any], params: dict[str, str]) -> list[str]:
    """The assertions of the template's Rules that `params` fails (CloudFormation refuses the deployment)."""
    refused = []
    for name, rule in template.get("Rules", {}).items():
        condition = rule.get("RuleCondition")
        if condition is not None and not evaluate(condition, params, f"rule {name}"):
            continue
        for assertion in rule.get("Assertions", []):
            if not evaluate(assertion["Assert"], params, f"rule {name}"):
                refused.append(f"{name}: {assertion.get('AssertDescription', '(no description)')}")
    return refused


def cold_start_refusals(environment: dict[str, str]) -> list[str]:
    """What a function's cold start refuses in `environment`, as the code decides it (a blank value is unset,
    functions/common/src/init.rs): shared/src/config.rs (an http destination needs its URL) and
    shared/src/compose.rs (dependency rules need the reference mirror as the destination)."""
    value = {name: text.strip() for name, text in environment.items() if text.strip()}
    destination = value.get("SYNCTRAIL_DESTINATION", "mirror")
    refused = []
    if destination == "http" and "SYNCTRAIL_DESTINATION_URL" not in value:
        refused.append("SYNCTRAIL_DESTINATION http without SYNCTRAIL_DESTINATION_URL")
    if destination != "mirror" and "SYNCTRAIL_DEPENDENCIES" in value:
        refused.append(f"SYNCTRAIL_DEPENDENCIES with SYNCTRAIL_DESTINATION {destination} (DependenciesNeedTheMirror)")
    return refused


def cmd_check_rules(args: argparse.Namespace) -> None:
    import itertools

    from function_deploy import load_template, plan

    template = load_template(Path(args.template))
    defaults = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    setup = {"table": "t-events", "bucket": "t-payloads", "queue_url": "http://q/t-ingest",
             "dlq_url": "http://q/t-ingest-dlq"}
    # The parameters the cold-start checks read, over every value that matters to them.
    varied = {
        "DestinationType": [str(v) for v in template["Parameters"]["DestinationType"]["AllowedValues"]],
        "DestinationUrl": ["", "https://receiver.example/synctrail"],
        "Dependencies": ["", "inventory_level.product_id=product"],
    }
    problems, refused_sets = [], 0
    for values in itertools.product(*varied.values()):
        chosen = dict(zip(varied, values))
        by_rules = rule_refusals(template, {**defaults, **chosen, "NamePrefix": "t"})
        by_code = []
        for binary in sorted(set(FUNCTIONS.values())):
            environment = plan(template, binary, "t", setup, chosen)["environment"]
            by_code += [f"{binary}: {reason}" for reason in cold_start_refusals(environment)]
        refused_sets += bool(by_rules)
        if bool(by_rules) != bool(by_code):
            problems.append(f"{chosen}: the Rules {'refuse' if by_rules else 'accept'} it ({by_rules}), the cold "
                            f"starts {'refuse' if by_code else 'accept'} it ({by_code})")
    if problems:
        raise Failure("the template's Rules and the functions' cold starts disagree: " + "; ".join(problems))
    total = len(list(itertools.product(*varied.values())))
    print(f"template Rules: {total} parameter sets, {refused_sets} refused, each exactly where a cold start would "
          f"refuse a function's environment")


# ----------------------------------------------------------------------------------------------- check-alarms


def emitted_metrics(repo: Path, binary: str) -> set[str]:
    """The EMF metric names functions/<binary>/src/metrics.rs declares: a `figures` array of ("name", value)
    pairs, or the processor's statuses (STATUS_METRICS) and count and series constants (COUNTS, SERIES)."""
    path = repo / "functions" / binary / "src" / "metrics.rs"
    if not path.exists():
        return set()
    text = path.read_text()
    names: set[str] = set()
    figures = re.search(r"let figures = \[(.*?)\];", text, re.S)
    if figures:
        names |= set(re.findall(r'\(\s*"([a-z0-9_]+)"\s*,', figures.group(1)))
    constants = dict(re.findall(r'pub const ([A-Z0-9_]+): &str = "([a-z0-9_]+)";', text))
    for group in ("COUNTS", "SERIES"):
        listed = re.search(rf"const {group}: \[&str; \d+\] = \[(.*?)\];", text, re.S)
        if listed:
            names |= {constants[c] for c in re.findall(r"[A-Z0-9_]+", listed.group(1)) if c in constants}
    statuses = re.search(r"pub const STATUS_METRICS: \[Status; \d+\] = \[(.*?)\];", text, re.S)
    if statuses:
        names |= {re.sub(r"(?<!^)([A-Z])", r"_\1", s).lower() for s in re.findall(r"Status::(\w+)", statuses.group(1))}
    return names


def cmd_check_alarms(args: argparse.Namespace) -> None:
    template = load_yaml(args.template)
    repo = Path(args.repo)
    binaries = {name: str(r["Properties"]["CodeUri"]).split("/")[-2]
                for name, r in resources_of_type(template, "AWS::Serverless::Function").items()}
    own_namespace = {"Ref": "MetricsNamespace"}
    problems, checked = [], 0

    def check_metric(alarm: str, metric: dict[str, Any]) -> None:
        nonlocal checked
        if metric.get("Namespace") != own_namespace:
            return
        name = metric.get("MetricName")
        dimensions = metric.get("Dimensions") or []
        functions = [d.get("Value", {}).get("Ref") for d in dimensions if d.get("Name") == "function"]
        if len(dimensions) != 1 or len(functions) != 1 or functions[0] not in binaries:
            problems.append(f"{alarm} {name}: dimensions {dimensions}; expected only function = Ref <a function>")
            return
        binary = binaries[functions[0]]
        emitted = emitted_metrics(repo, binary)
        if name not in emitted:
            problems.append(f"{alarm}: {binary} emits no metric {name!r} (it emits {sorted(emitted)})")
        checked += 1

    for alarm, resource in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
        props = resource.get("Properties", {})
        if "Metrics" not in props:
            check_metric(alarm, props)
            continue
        queries = props["Metrics"]
        returned = [q for q in queries if q.get("ReturnData", True)]
        if len(returned) != 1 or "Expression" not in returned[0]:
            problems.append(f"{alarm}: expected exactly one returned query, an expression")
            continue
        expression = returned[0]["Expression"]
        for query in queries:
            if "MetricStat" not in query:
                continue
            check_metric(alarm, query["MetricStat"]["Metric"])
            if not re.search(rf"\bFILL\(\s*{re.escape(query['Id'])}\s*,", expression):
                problems.append(f"{alarm}: {query['Id']} is not FILLed in {expression!r} (a period without it would "
                                "drop the sum)")
    if problems:
        raise Failure("alarms on metrics the code does not emit as they say: " + "; ".join(problems))
    print(f"alarms: {checked} metrics on {args.template}'s namespace, each emitted by the function it names")


# ----------------------------------------------------------------------------------------------- translate


class NoManagedPolicies:
    """The template names no AWS managed policies (every role is written out), so none need looking up."""

    def load(self) -> dict[str, str]:
        return {}


def cmd_translate(args: argparse.Namespace) -> None:
    from samtranslator.translator.transform import transform

    template = load_yaml(args.template)
    functions = resources_of_type(template, "AWS::Serverless::Function")
    if not functions:
        raise Failure(f"{args.template} has no AWS::Serverless::Function")
    for name, function in functions.items():
        code_uri = function.get("Properties", {}).get("CodeUri")
        if not isinstance(code_uri, str) or not code_uri.endswith("/bootstrap.zip"):
            raise Failure(f"{name}: CodeUri {code_uri!r} is not a target/lambda/<bin>/bootstrap.zip path")
        # What `sam package` does: the local zip becomes an S3 object.
        function["Properties"]["CodeUri"] = {"Bucket": args.code_bucket, "Key": f"{name}.zip"}
    try:
        translated = transform(template, {}, NoManagedPolicies())
    except Exception as error:  # the translator's errors carry the offending resource
        raise Failure(f"aws-sam-translator rejected {args.template}: {error}") from error
    Path(args.out).write_text(json.dumps(translated, indent=1, sort_keys=True) + "\n")
    kinds: dict[str, int] = {}
    for resource in translated["Resources"].values():
        kinds[resource["Type"]] = kinds.get(resource["Type"], 0) + 1
    print(f"translated {args.template}: {len(translated['Resources'])} resources ("
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")")


# ----------------------------------------------------------------------------------------------- deploy


def placeholder_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        archive.writestr(info, "#!/bin/sh\necho 'placeholder: moto never runs it' >&2\nexit 1\n")
    return buffer.getvalue()


def stack_events(cfn: Any, stack: str) -> str:
    try:
        events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    except Exception as error:  # noqa: BLE001 - only for the failure message
        return f"(no events: {error})"
    lines = [f"{e.get('LogicalResourceId')} {e.get('ResourceStatus')} {e.get('ResourceStatusReason', '')}"
             for e in events if "FAILED" in e.get("ResourceStatus", "")]
    return "; ".join(lines[:10]) or "(no failed resources listed)"


# Resource types moto's CloudFormation skips (it then fails on an output that reads one of their attributes).
MOTO_UNMODELLED = {"AWS::Lambda::Url", "AWS::CloudWatch::Alarm", "AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy"}


def getatt_targets(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["Fn::GetAtt"][0]] if isinstance(value.get("Fn::GetAtt"), list) else []
        return found + [t for v in value.values() for t in getatt_targets(v)]
    if isinstance(value, list):
        return [t for v in value for t in getatt_targets(v)]
    return []


def for_moto(template: dict[str, Any]) -> dict[str, Any]:
    """The template with outputs that read attributes of resources moto does not model given fixed values."""
    template = json.loads(json.dumps(template))
    resources = template["Resources"]
    for key, output in template.get("Outputs", {}).items():
        unmodelled = [t for t in getatt_targets(output.get("Value"))
                      if resources.get(t, {}).get("Type") in MOTO_UNMODELLED]
        if unmodelled:
            output["Value"] = f"(moto does not model {', '.join(sorted(set(unmodelled)))})"
            print(f"  output {key}: a placeholder, moto does not model {', '.join(sorted(set(unmodelled)))}")
    return template


def cmd_deploy(args: argparse.Namespace) -> None:
    s3, cfn = clients(args.endpoint, "s3", "cloudformation")
    template = for_moto(load_json(args.template))
    s3.create_bucket(Bucket=args.code_bucket)
    code = placeholder_zip()
    for name in resources_of_type(template, "AWS::Lambda::Function"):
        s3.put_object(Bucket=args.code_bucket, Key=f"{name}.zip", Body=code)
    parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in params(args.param).items()]
    cfn.create_stack(StackName=args.stack, TemplateBody=json.dumps(template), Parameters=parameters,
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    deadline = time.monotonic() + args.timeout
    status = "?"
    while time.monotonic() < deadline:
        stack = cfn.describe_stacks(StackName=args.stack)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            break
        if status.endswith("FAILED") or "ROLLBACK" in status:
            raise Failure(f"stack {args.stack} ended {status}: {stack_events(cfn, args.stack)}")
        time.sleep(1)
    else:
        raise Failure(f"stack {args.stack} is still {status} after {args.timeout} s")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    write_json(args.outputs, {"stack": args.stack, "parameters": params(args.param), "outputs": outputs})
    # moto lists a resource type it skipped as an empty entry.
    created = {r.get("LogicalResourceId") for r in cfn.describe_stack_resources(StackName=args.stack)["StackResources"]}
    skipped: dict[str, int] = {}
    for name, resource in template["Resources"].items():
        if name not in created:
            skipped[resource["Type"]] = skipped.get(resource["Type"], 0) + 1
    print(f"stack {args.stack}: {status}, {len(created)} resources, {len(outputs)} outputs")
    if skipped:
        print("  not modelled by moto's CloudFormation (checked by cfn-lint and checkov only): "
              + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items())))


# ----------------------------------------------------------------------------------------------- apply-ignored


def physical_ids(cfn: Any, stack: str) -> dict[str, str]:
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r.get("PhysicalResourceId") for r in resources if r.get("LogicalResourceId")}


PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


class Context:
    """What intrinsics resolve against: parameters, physical ids, the template's conditions, known attributes."""

    def __init__(self, parameters: dict[str, str], ids: dict[str, str], conditions: dict[str, Any] | None = None,
                 attributes: dict[tuple[str, str], str] | None = None) -> None:
        self.parameters, self.ids = parameters, ids
        self.conditions, self.attributes = conditions or {}, attributes or {}

    def ref(self, name: str) -> str:
        for table in (self.parameters, self.ids, PSEUDO):
            if name in table:
                return table[name]
        raise Failure(f"cannot resolve Ref {name}")

    def attribute(self, logical: str, name: str) -> str:
        if (logical, name) not in self.attributes:
            raise Failure(f"cannot resolve {logical}.{name}; extend the attributes apply-ignored looks up")
        return self.attributes[(logical, name)]

    def condition(self, value: Any) -> bool:
        if isinstance(value, dict) and "Condition" in value:
            return self.condition(self.conditions[value["Condition"]])
        if isinstance(value, dict) and "Fn::Equals" in value:
            left, right = (resolve(v, self) for v in value["Fn::Equals"])
            return str(left) == str(right)
        if isinstance(value, dict) and "Fn::Not" in value:
            return not self.condition(value["Fn::Not"][0])
        if isinstance(value, dict) and "Fn::And" in value:
            return all(self.condition(v) for v in value["Fn::And"])
        if isinstance(value, dict) and "Fn::Or" in value:
            return any(self.condition(v) for v in value["Fn::Or"])
        raise Failure(f"cannot evaluate condition {json.dumps(value)}")

    def sub(self, text: str, names: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in names:
                return str(resolve(names[name], self))
            if "." in name and not name.startswith("AWS::"):
                return self.attribute(*name.split(".", 1))
            return self.ref(name)
        return re.sub(r"\$\{([^}!]+)\}", one, text)


def resolve(value: Any, ctx: Context) -> Any:
    """The intrinsics the settings applied here use: Ref, Fn::Sub, Fn::If (the template's conditions) and
    Fn::GetAtt of the attributes looked up beforehand."""
    if isinstance(value, dict) and list(value) == ["Ref"]:
        return ctx.ref(value["Ref"])
    if isinstance(value, dict) and list(value) == ["Fn::Sub"]:
        spec = value["Fn::Sub"]
        text, names = (spec, {}) if isinstance(spec, str) else (spec[0], spec[1])
        return ctx.sub(text, names)
    if isinstance(value, dict) and list(value) == ["Fn::If"]:
        name, yes, no = value["Fn::If"]
        return resolve(yes if ctx.condition(ctx.conditions[name]) else no, ctx)
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        return ctx.attribute(*value["Fn::GetAtt"])
    if isinstance(value, dict):
        if any(k.startswith("Fn::") for k in value):
            raise Failure(f"cannot resolve {json.dumps(value)} offline; extend resolve() in infra/moto_stack.py")
        return {k: resolve(v, ctx) for k, v in value.items() if v != {"Ref": "AWS::NoValue"}}
    if isinstance(value, list):
        return [resolve(v, ctx) for v in value]
    return value


def stack_parameters(cfn: Any, stack: str, template: dict[str, Any]) -> dict[str, str]:
    given = {p["ParameterKey"]: p["ParameterValue"]
             for p in cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Parameters", [])}
    out = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    out.update(given)
    return out


def lifecycle_rule_to_api(rule: dict[str, Any]) -> dict[str, Any]:
    known = {"Id", "Status", "Prefix", "Transitions", "ExpirationInDays", "AbortIncompleteMultipartUpload"}
    unknown = set(rule) - known
    if unknown:
        raise Failure(f"lifecycle rule {rule.get('Id')}: no API mapping for {sorted(unknown)} in infra/moto_stack.py")
    api: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Transitions" in rule:
        api["Transitions"] = [{"Days": int(t["TransitionInDays"]), "StorageClass": t["StorageClass"]}
                              for t in rule["Transitions"]]
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return api


def arn_attributes(template: dict[str, Any], ids: dict[str, str], lam: Any, iam: Any) -> dict[tuple[str, str], str]:
    """The `Arn` of every function and role of the stack, read back from moto (what Fn::GetAtt X.Arn gives)."""
    found = {}
    for name in resources_of_type(template, "AWS::Lambda::Function"):
        found[(name, "Arn")] = lam.get_function(FunctionName=ids[name])["Configuration"]["FunctionArn"]
    for name in resources_of_type(template, "AWS::IAM::Role"):
        found[(name, "Arn")] = iam.get_role(RoleName=ids[name])["Role"]["Arn"]
    return found


def cmd_apply_ignored(args: argparse.Namespace) -> None:
    cfn, dynamodb, s3, lam, iam, scheduler = clients(
        args.endpoint, "cloudformation", "dynamodb", "s3", "lambda", "iam", "scheduler")
    template = load_json(args.template)
    ids = physical_ids(cfn, args.stack)
    parameters = stack_parameters(cfn, args.stack, template)
    ctx = Context(parameters, ids, template.get("Conditions"), arn_attributes(template, ids, lam, iam))
    applied = []
    for name, table in resources_of_type(template, "AWS::DynamoDB::Table").items():
        props = resolve(
            {k: v for k, v in table["Properties"].items()
             if k in ("TimeToLiveSpecification", "PointInTimeRecoverySpecification")}, ctx)
        physical = ids[name]
        if "TimeToLiveSpecification" in props:
            spec = props["TimeToLiveSpecification"]
            dynamodb.update_time_to_live(TableName=physical, TimeToLiveSpecification={
                "AttributeName": spec["AttributeName"], "Enabled": spec["Enabled"] in (True, "true")})
            applied.append(f"TTL on {physical}.{spec['AttributeName']}")
        if "PointInTimeRecoverySpecification" in props:
            enabled = props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] in (True, "true")
            dynamodb.update_continuous_backups(TableName=physical, PointInTimeRecoverySpecification={
                "PointInTimeRecoveryEnabled": enabled})
            applied.append(f"point-in-time recovery {'on' if enabled else 'off'} for {physical}")
    for name, bucket in resources_of_type(template, "AWS::S3::Bucket").items():
        props = resolve({k: v for k, v in bucket["Properties"].items()
                         if k in ("LifecycleConfiguration", "PublicAccessBlockConfiguration")}, ctx)
        physical = ids[name]
        if "LifecycleConfiguration" in props:
            rules = [lifecycle_rule_to_api(r) for r in props["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=physical, LifecycleConfiguration={"Rules": rules})
            applied.append(f"lifecycle of {physical} ({len(rules)} rule(s))")
        if "PublicAccessBlockConfiguration" in props:
            block = {k: v in (True, "true") for k, v in props["PublicAccessBlockConfiguration"].items()}
            s3.put_public_access_block(Bucket=physical, PublicAccessBlockConfiguration=block)
            applied.append(f"public access block on {physical}")
    for name, schedule in resources_of_type(template, "AWS::Scheduler::Schedule").items():
        props = resolve(schedule["Properties"], ctx)
        known = {"Name", "Description", "ScheduleExpression", "FlexibleTimeWindow", "State", "Target", "GroupName"}
        if set(props) - known:
            raise Failure(f"{name}: no API mapping for {sorted(set(props) - known)} in infra/moto_stack.py")
        scheduler.create_schedule(**props)
        applied.append(f"schedule {props['Name']} ({props['ScheduleExpression']}, {props.get('State', 'ENABLED')})")
    print("applied what moto's CloudFormation ignores: " + "; ".join(applied))


# ----------------------------------------------------------------------------------------------- verify

REQUIRED_ENV = [
    "SYNCTRAIL_TABLE", "SYNCTRAIL_BUCKET", "SYNCTRAIL_QUEUE_URL", "SYNCTRAIL_DLQ_URL", "SYNCTRAIL_MAX_ATTEMPTS",
    "SYNCTRAIL_LEASE_SECONDS", "SYNCTRAIL_IN_ORDER_TYPES", "SYNCTRAIL_DISABLED_SOURCES",
    "SYNCTRAIL_DISABLED_TENANTS", "SYNCTRAIL_MAX_WAIT_SECONDS", "SYNCTRAIL_METRICS_NAMESPACE", "RUST_LOG",
    "SYNCTRAIL_METADATA_RETENTION_DAYS", "SYNCTRAIL_DEPENDENCIES", "SYNCTRAIL_DELTA_FIELDS",
]
FUNCTIONS = {"Ingest": "ingest", "Processor": "processor", "Sweeper": "sweeper", "Status": "status",
             "Reprocess": "reprocess", "Reconcile": "reconcile"}
# Read by the code but meant for other places than the deployed functions.
NOT_FOR_FUNCTIONS = {"SYNCTRAIL_HOME", "SYNCTRAIL_BACKEND", "SYNCTRAIL_SERIALIZE_DYNAMODB",
                     "SYNCTRAIL_TEST_AWS_ENDPOINT"}


def env_names_in_code(root: Path) -> set[str]:
    names: set[str] = set()
    for directory in ("functions", "shared/src"):
        for path in (root / directory).rglob("*.rs"):
            text = path.read_text(errors="replace")
            names.update(re.findall(r'"(SYNCTRAIL_[A-Z0-9_]+)"', text))
    return names


def cmd_verify(args: argparse.Namespace) -> None:
    cfn, lam, sqs, events, scheduler = clients(args.endpoint, "cloudformation", "lambda", "sqs", "events", "scheduler")
    template = load_json(args.template)
    parameters = stack_parameters(cfn, args.stack, template)
    outputs = load_json(args.outputs)["outputs"]
    problems: list[str] = []

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{what}: {actual!r}, expected {wanted!r}")

    prefix = parameters["NamePrefix"]
    for key in ("TableName", "BucketName", "QueueUrl", "DlqUrl", "QueueArn", "DataKeyArn", "StatusUrl", "WebhookUrl",
                *(f"{f}Function{s}" for f in FUNCTIONS for s in ("Name", "Arn"))):
        if not outputs.get(key):
            problems.append(f"output {key} is missing")
    expect("output TableName", outputs.get("TableName"), f"{prefix}-events")
    expect("output QueueUrl (queue name)", str(outputs.get("QueueUrl", "")).rsplit("/", 1)[-1], f"{prefix}-ingest")
    expect("output DlqUrl (queue name)", str(outputs.get("DlqUrl", "")).rsplit("/", 1)[-1], f"{prefix}-ingest-dlq")
    if parameters.get("PayloadBucketName"):
        expect("output BucketName", outputs.get("BucketName"), parameters["PayloadBucketName"])

    for logical, short in FUNCTIONS.items():
        name = outputs.get(f"{logical}FunctionName", "")
        expect(f"{logical} function name", name, f"{prefix}-{short}")
        try:
            config = lam.get_function_configuration(FunctionName=name)
        except Exception as error:  # noqa: BLE001 - reported as a finding
            problems.append(f"function {name}: {error}")
            continue
        expect(f"{name} runtime", config.get("Runtime"), "provided.al2023")
        expect(f"{name} handler", config.get("Handler"), "bootstrap")
        # moto's CloudFormation drops these three: check them in the expanded template.
        props = template["Resources"][logical]["Properties"]
        expect(f"{logical} architectures", props.get("Architectures"), ["arm64"])
        expect(f"{logical} tracing", (props.get("TracingConfig") or {}).get("Mode"), "Active")
        expect(f"{logical} environment key", props.get("KmsKeyArn"), {"Fn::GetAtt": ["DataKey", "Arn"]})
        env = (config.get("Environment") or {}).get("Variables", {})
        missing = [v for v in REQUIRED_ENV if v not in env]
        if missing:
            problems.append(f"{name} lacks environment variables {missing}")
        expect(f"{name} SYNCTRAIL_TABLE", env.get("SYNCTRAIL_TABLE"), outputs.get("TableName"))
        expect(f"{name} SYNCTRAIL_BUCKET", env.get("SYNCTRAIL_BUCKET"), outputs.get("BucketName"))
        expect(f"{name} SYNCTRAIL_QUEUE_URL", env.get("SYNCTRAIL_QUEUE_URL"), outputs.get("QueueUrl"))
        expect(f"{name} SYNCTRAIL_DLQ_URL", env.get("SYNCTRAIL_DLQ_URL"), outputs.get("DlqUrl"))

    processor = outputs.get("ProcessorFunctionName", "")
    mappings = lam.list_event_source_mappings(FunctionName=processor).get("EventSourceMappings", [])
    if len(mappings) != 1:
        problems.append(f"{processor} has {len(mappings)} event source mappings, expected 1 (the ingest queue)")
    else:
        esm = mappings[0]
        expect("event source", esm.get("EventSourceArn"), outputs.get("QueueArn"))
        expect("event source response types", esm.get("FunctionResponseTypes"), ["ReportBatchItemFailures"])
        expect("event source batch size", esm.get("BatchSize"), int(parameters["BatchSize"]))
        expect("event source batching window", int(esm.get("MaximumBatchingWindowInSeconds") or 0),
               int(parameters["MaximumBatchingWindowSeconds"]))
        expect("event source maximum concurrency", (esm.get("ScalingConfig") or {}).get("MaximumConcurrency"),
               int(parameters["MaximumConcurrency"]))
        expect("event source state", esm.get("State"),
               "Enabled" if parameters["IngestEnabled"] == "true" else "Disabled")

    attributes = sqs.get_queue_attributes(QueueUrl=outputs.get("QueueUrl"), AttributeNames=["All"])["Attributes"]
    timeout = lam.get_function_configuration(FunctionName=processor).get("Timeout", 0)
    window = int(parameters["MaximumBatchingWindowSeconds"])
    visibility = int(attributes.get("VisibilityTimeout", 0))
    if visibility < 6 * timeout + window:
        problems.append(f"ingest queue visibility {visibility} s < 6 x processor timeout {timeout} s + batching "
                        f"window {window} s: messages would reappear while still in process")
    redrive = json.loads(attributes.get("RedrivePolicy", "{}"))
    dlq_arn = sqs.get_queue_attributes(QueueUrl=outputs.get("DlqUrl"), AttributeNames=["QueueArn"])["Attributes"]
    expect("ingest queue redrive target", redrive.get("deadLetterTargetArn"), dlq_arn.get("QueueArn"))
    expect("ingest queue maxReceiveCount", int(redrive.get("maxReceiveCount", 0)), int(parameters["MaxReceiveCount"]))

    rules = events.list_rules(NamePrefix=f"{prefix}-sweeper").get("Rules", [])
    if len(rules) != 1:
        problems.append(f"{len(rules)} EventBridge rules named {prefix}-sweeper, expected 1")
    else:
        expect("sweeper schedule", rules[0].get("ScheduleExpression"), parameters["SweeperSchedule"])
        expect("sweeper schedule state", rules[0].get("State"), "ENABLED")
        targets = events.list_targets_by_rule(Rule=rules[0]["Name"]).get("Targets", [])
        expect("sweeper schedule targets", [t.get("Arn") for t in targets], [outputs.get("SweeperFunctionArn")])

    try:
        reconcile = scheduler.get_schedule(Name=f"{prefix}-reconcile")
    except Exception as error:  # noqa: BLE001 - reported as a finding
        problems.append(f"the reconcile schedule {prefix}-reconcile: {error}")
    else:
        expect("reconcile schedule", reconcile.get("ScheduleExpression"), parameters["ReconcileSchedule"])
        expect("reconcile schedule state", reconcile.get("State"),
               "ENABLED" if parameters["ReconcileEnabled"] == "true" else "DISABLED")
        target = reconcile.get("Target", {})
        expect("reconcile schedule target", target.get("Arn"), outputs.get("ReconcileFunctionArn"))
        request = json.loads(target.get("Input") or "{}")
        snapshot = f"s3://{outputs.get('BucketName')}/{parameters['ReconcileSnapshotKey']}"
        expect("reconcile request snapshot", request.get("snapshot"), snapshot)
        expect("reconcile request run id", request.get("run_id"), "<aws.scheduler.scheduled-time>")
        expect("reconcile request apply", request.get("apply"), parameters["ReconcileApply"] == "true")

    # The environment the template sets and the variables the code reads (warnings: code may land later).
    root = Path(args.repo)
    in_code = env_names_in_code(root)
    in_template = set()
    for function in resources_of_type(template, "AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        in_template.update(v for v in variables if v.startswith("SYNCTRAIL_"))
    unread = sorted(in_template - in_code)
    unset = sorted(in_code - in_template - NOT_FOR_FUNCTIONS - {"SYNCTRAIL_MAX_PAYLOAD_BYTES"})
    if unread:
        print(f"  note: set by the template but not read by the code (yet): {', '.join(unread)}")
    if unset:
        print(f"  note: read by the code but not set by the template: {', '.join(unset)}")

    if problems:
        raise Failure(f"the stack does not match the template's promises ({len(problems)}): " + "; ".join(problems))
    print(f"stack {args.stack}: names, {len(FUNCTIONS)} functions (arm64, provided.al2023, X-Ray, environment), the "
          f"event source mapping, the sweeper and reconcile schedules and the queue timing (visibility {visibility} s "
          f">= 6 x {timeout} s + {window} s) check out")


# ----------------------------------------------------------------------------------------------- describe / diff


def cmd_describe(args: argparse.Namespace) -> None:
    dynamodb, s3, sqs = clients(args.endpoint, "dynamodb", "s3", "sqs")
    table = dynamodb.describe_table(TableName=args.table)["Table"]
    ttl = dynamodb.describe_time_to_live(TableName=args.table)["TimeToLiveDescription"]
    description: dict[str, Any] = {
        "table": {
            "billing_mode": (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED"),
            "key_schema": [[k["AttributeName"], k["KeyType"]] for k in table["KeySchema"]],
            "attributes": sorted([a["AttributeName"], a["AttributeType"]] for a in table["AttributeDefinitions"]),
            "indexes": {
                g["IndexName"]: {"key_schema": [[k["AttributeName"], k["KeyType"]] for k in g["KeySchema"]],
                                 "projection": g["Projection"].get("ProjectionType"),
                                 "projected": sorted(g["Projection"].get("NonKeyAttributes", []))}
                for g in table.get("GlobalSecondaryIndexes", [])
            },
            "local_indexes": sorted(i["IndexName"] for i in table.get("LocalSecondaryIndexes", [])),
            "ttl": {"attribute": ttl.get("AttributeName"),
                    "enabled": ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")},
        }
    }
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=args.bucket)["Rules"]
    except s3.exceptions.ClientError as error:
        if "NoSuchLifecycleConfiguration" not in str(error):
            raise
        rules = []
    normalized_rules = []
    for rule in rules:
        normalized_rules.append({
            "id": rule.get("ID"),
            "status": rule.get("Status"),
            "prefix": (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix")),
            "transitions": sorted([t.get("Days"), t.get("StorageClass")] for t in rule.get("Transitions", [])),
            "expiration_days": (rule.get("Expiration") or {}).get("Days"),
            "abort_incomplete_days": (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation"),
        })
    block = s3.get_public_access_block(Bucket=args.bucket)["PublicAccessBlockConfiguration"]
    description["bucket"] = {"lifecycle": sorted(normalized_rules, key=lambda r: str(r["id"])),
                             "public_access_block": block}
    names = ["VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "MaximumMessageSize",
             "ReceiveMessageWaitTimeSeconds", "FifoQueue", "RedrivePolicy", "QueueArn"]
    def url(queue: str) -> str:
        return queue if queue.startswith(("http://", "https://")) else sqs.get_queue_url(QueueName=queue)["QueueUrl"]

    dlq = sqs.get_queue_attributes(QueueUrl=url(args.dlq_url), AttributeNames=["All"])["Attributes"]
    queue = sqs.get_queue_attributes(QueueUrl=url(args.queue_url), AttributeNames=["All"])["Attributes"]
    for key, attributes in (("queue", queue), ("dlq", dlq)):
        entry = {n: attributes.get(n) for n in names if n not in ("RedrivePolicy", "QueueArn")}
        if attributes.get("RedrivePolicy"):
            policy = json.loads(attributes["RedrivePolicy"])
            target = policy.get("deadLetterTargetArn")
            entry["redrive"] = {"max_receive_count": int(policy.get("maxReceiveCount", 0)),
                                "target": "the DLQ" if target == dlq.get("QueueArn") else target}
        description[key] = entry
    write_json(args.out, description)


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            where = f"{path}.{key}" if path else str(key)
            if key not in a:
                out.append(f"{where}: only in the second ({json.dumps(b[key])})")
            elif key not in b:
                out.append(f"{where}: only in the first ({json.dumps(a[key])})")
            else:
                out.extend(differences(a[key], b[key], where))
        return out
    return [] if a == b else [f"{path}: {json.dumps(a)} vs {json.dumps(b)}"]


def cmd_diff(args: argparse.Namespace) -> None:
    found = differences(load_json(args.first), load_json(args.second))
    if found:
        raise Failure(f"{args.what}: {len(found)} difference(s): " + "; ".join(found))
    print(f"{args.what}: identical")


# ----------------------------------------------------------------------------------------------- resources / demo


def cmd_resources(args: argparse.Namespace) -> None:
    dynamodb, s3, sqs = clients(args.endpoint, "dynamodb", "s3", "sqs")
    tables = dynamodb.list_tables().get("TableNames", [])
    buckets = [b["Name"] for b in s3.list_buckets().get("Buckets", [])]
    queues = sqs.list_queues().get("QueueUrls", [])
    write_json(args.out, {"tables": sorted(tables), "buckets": sorted(buckets), "queues": sorted(queues)})


def cmd_check_demo(args: argparse.Namespace) -> None:
    text = Path(args.report).read_text()
    try:
        report = json.loads(text)
    except ValueError as error:
        raise Failure(f"the demo's report {args.report} is not JSON ({error}): {text[:300]!r}") from error
    outputs = load_json(args.outputs)["outputs"]
    selector = report.get("selector", "")
    words = selector.split()
    used = {flag: words[i + 1] for i, flag in enumerate(words[:-1]) if flag.startswith("--")}
    # Queues compare by name: moto answers with URLs of the host a request went to, CloudFormation with AWS's.
    for flag, key in (("--table", "TableName"), ("--bucket", "BucketName"), ("--queue", "QueueUrl"),
                      ("--dlq", "DlqUrl")):
        wanted, actual = outputs[key], used.get(flag, "")
        if flag in ("--queue", "--dlq"):
            wanted, actual = wanted.rsplit("/", 1)[-1], actual.rsplit("/", 1)[-1]
        if actual != wanted:
            raise Failure(f"the demo did not run on the stack's {key} {wanted}: its selector is {selector!r}")
    convergence = report.get("convergence", {})
    failures = convergence.get("failures", [])
    fields = ("entities", "entities_matching", "events_sent", "events_recorded", "events_terminal", "effects",
              "events_with_several_effects")
    summary = ", ".join(f"{f} {convergence.get(f)}" for f in fields if f in convergence)
    if failures:
        raise Failure(f"the demo did not converge ({len(failures)} failure(s)): {failures[:5]}; {summary}")
    if not convergence:
        raise Failure(f"the demo's report has no convergence section: {list(report)}")
    webhooks = report.get("webhooks", {})
    if webhooks.get("failures") or not webhooks.get("signed") or webhooks.get("completed") != webhooks.get("signed"):
        raise Failure(f"the demo's webhook leg did not pass: {webhooks}")
    statuses = report.get("statuses", {})
    print(f"demo converged on the stack's resources: {summary}; webhooks {webhooks['completed']}/{webhooks['signed']} "
          f"completed, the forged one {webhooks.get('forged_status')}; statuses {json.dumps(statuses, sort_keys=True)}")


# ----------------------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("check-skips")
    p.add_argument("template")
    p.set_defaults(run=cmd_check_skips)

    p = sub.add_parser("check-rules")
    p.add_argument("template")
    p.set_defaults(run=cmd_check_rules)

    p = sub.add_parser("check-alarms")
    p.add_argument("template")
    p.add_argument("--repo", required=True)
    p.set_defaults(run=cmd_check_alarms)

    p = sub.add_parser("translate")
    p.add_argument("template")
    p.add_argument("out")
    p.add_argument("--code-bucket", required=True)
    p.set_defaults(run=cmd_translate)

    p = sub.add_parser("deploy")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--stack", required=True)
    p.add_argument("--code-bucket", required=True)
    p.add_argument("--param", action="append", default=[])
    p.add_argument("--outputs", required=True)
    p.add_argument("--timeout", type=float, default=120)
    p.set_defaults(run=cmd_deploy)

    for name, run in (("apply-ignored", cmd_apply_ignored), ("verify", cmd_verify)):
        p = sub.add_parser(name)
        p.add_argument("--endpoint", required=True)
        p.add_argument("--template", required=True)
        p.add_argument("--stack", required=True)
        if name == "verify":
            p.add_argument("--outputs", required=True)
            p.add_argument("--repo", required=True)
        p.set_defaults(run=run)

    p = sub.add_parser("describe")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--bucket", required=True)
    p.add_argument("--queue-url", required=True)
    p.add_argument("--dlq-url", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_describe)

    p = sub.add_parser("diff")
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--what", required=True)
    p.set_defaults(run=cmd_diff)

    p = sub.add_parser("resources")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(run=cmd_resources)

    p = sub.add_parser("check-demo")
    p.add_argument("report")
    p.add_argument("--outputs", required=True)
    p.set_defaults(run=cmd_check_demo)

    args = parser.parse_args()
    try:
        args.run(args)
    except Failure as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        return 1
    except Exception as error:  # an AWS call or a file: name it, without a traceback
        if type(error).__module__.split(".")[0] not in ("botocore", "boto3", "builtins"):
            raise
        print(f"FAIL: {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
