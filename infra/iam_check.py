#!/usr/bin/env python3
"""Check the IAM policies against the AWS calls the code really makes.

Usage:
  iam_check.py CALLS.jsonl [--sam infra/template.yaml] [--cdk BedrockMeter.template.json]
               [--operator infra/operator-policy.json]
               [--justifications infra/iam-justifications.yaml]

CALLS.jsonl is what the aws-call-log crate appended while the tests ran with
BEDROCK_METER_CALL_LOG set (scripts/test.sh does): one JSON object per call,
{"component", "service", "operation", "resource"[, "items"]}. DynamoDB Local, moto and
the test fakes check no IAM, so this is where a missing permission shows before AWS.

Who is checked against what:
  * ingest, kinesis-ingest, budget-alerts, dashboard-widget, price-sync: the role of
    IngestFunction, KinesisIngestFunction, BudgetAlertsFunction, DashboardWidgetFunction,
    PriceSyncFunction, in the SAM template and in the
    synthesized CDK template (inline policies and AWS::IAM::Policy resources attached);
  * "cli <subcommand>": infra/operator-policy.json, the documented policy for people who
    run the CLI (docs/security.md);
  * "test-harness": set-up and inspection of test data, ignored.

Two rules, both fatal:
  1. every recorded call is allowed: each IAM action it needs (TransactWriteItems needs
     PutItem/UpdateItem/DeleteItem/ConditionCheckItem per item action) on the ARN IAM
     evaluates (a Query on an index is evaluated on table/NAME/index/INDEX, not on the
     table), with no Deny;
  2. every permission granted is used by a recorded call, or justified in
     infra/iam-justifications.yaml (one list for both templates: the synthesized CDK
     template keeps no comments). A justification that matches no grant is stale: fatal.

Resources are compared symbolically: the table a call names becomes
arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${UsageTable} (the code
addresses one table, USAGE_TABLE), the topic ${AlertTopic}, an S3 bucket ${LogBucket},
an SQS queue ${FailureQueue}, a Kinesis stream ${InvocationLogStream}; template
references (!GetAtt UsageTable.Arn, !Sub, Fn::Join, Fn::If) resolve to the same form.

Exit status: 0 all allowed and used, 1 a violation (listed), 2 bad input.
Standard library plus PyYAML.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent

REGION = "${AWS::Region}"
ACCOUNT = "${AWS::AccountId}"
PARTITION = "aws"

# component -> logical id of the function whose role its calls need.
FUNCTIONS = {
    "ingest": "IngestFunction",
    "kinesis-ingest": "KinesisIngestFunction",
    "budget-alerts": "BudgetAlertsFunction",
    "dashboard-widget": "DashboardWidgetFunction",
    "price-sync": "PriceSyncFunction",
}
OPERATOR = "operator"
HARNESS = "test-harness"

# What a recorded resource stands for (the code addresses exactly these).
TABLE = "${UsageTable}"
STREAM_LABEL = "${StreamLabel}"
TOPIC = "${AlertTopic}"
BUCKET = "${LogBucket}"
QUEUE = "${FailureQueue}"
KINESIS_STREAM = "${InvocationLogStream}"

# Placeholders of infra/operator-policy.json -> the symbols above.
OPERATOR_PLACEHOLDERS = {
    "${Partition}": PARTITION,
    "${Region}": REGION,
    "${Account}": ACCOUNT,
    "${Table}": TABLE,
    "${LogBucket}": BUCKET,
    "${FailureQueue}": QUEUE,
    "${InvocationLogStream}": KINESIS_STREAM,
}

TRANSACT_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
S3_ACTIONS = {
    "ListObjectsV2": ("s3:ListBucket", "bucket"),
    "ListObjects": ("s3:ListBucket", "bucket"),
    "HeadObject": ("s3:GetObject", "object"),
    "GetObject": ("s3:GetObject", "object"),
    "PutObject": ("s3:PutObject", "object"),
    "DeleteObject": ("s3:DeleteObject", "object"),
    "HeadBucket": ("s3:ListBucket", "bucket"),
    "GetBucketLocation": ("s3:GetBucketLocation", "bucket"),
    "ListBuckets": ("s3:ListAllMyBuckets", "none"),
}


class InputError(Exception):
    """Bad input: a file that cannot be read or a template construct not understood."""


# ---------------------------------------------------------------------------
# Recorded calls
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Need:
    """One (IAM action, resource ARN) a recorded call needs."""

    action: str
    resource: str  # "*" when the request names none (the resource is unknown)


def load_calls(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(
            f"cannot read the call log {path} ({e.strerror}): run the tests with "
            "BEDROCK_METER_CALL_LOG set (scripts/test.sh does)"
        ) from e
    calls = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            call = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: not a JSON line ({e.msg})") from e
        missing = {"component", "service", "operation", "resource"} - set(call)
        if missing:
            raise InputError(f"{path}:{n}: missing {sorted(missing)}")
        calls.append(call)
    return calls


def table_arn(name_and_index: str) -> str:
    """`table` or `table/index/I` (or a table ARN) -> the symbolic ARN."""
    if name_and_index.startswith("arn:"):
        name_and_index = name_and_index.split(":table/", 1)[-1]
    _, sep, index = name_and_index.partition("/index/")
    arn = f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}"
    return f"{arn}/index/{index}" if sep else arn


def needs_of(call: dict[str, Any]) -> list[Need]:
    """The IAM actions and symbolic resource ARNs one recorded call needs."""
    service, operation, resource = call["service"], call["operation"], call["resource"]
    unknown = resource in ("", "*")
    if service == "dynamodb":
        if "/stream/" in resource:
            arn = f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{TABLE}/stream/{STREAM_LABEL}"
        elif unknown:
            arn = "*"
        else:
            arn = table_arn(resource)
        if operation in ("TransactWriteItems", "TransactGetItems"):
            items = call.get("items") or []
            if not items:
                raise InputError(f"{operation} recorded without its item actions: {call}")
            return [Need(f"dynamodb:{TRANSACT_ITEM_ACTIONS[i]}", arn) for i in items]
        return [Need(f"dynamodb:{operation}", arn)]
    if service == "sns":
        return [Need(f"sns:{operation}", "*" if unknown else f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{TOPIC}")]
    if service == "sqs":
        return [Need(f"sqs:{operation}", "*" if unknown else f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{QUEUE}")]
    if service == "kinesis":
        return [
            Need(
                f"kinesis:{operation}",
                "*" if unknown else f"arn:{PARTITION}:kinesis:{REGION}:{ACCOUNT}:stream/{KINESIS_STREAM}",
            )
        ]
    if service == "s3":
        action, level = S3_ACTIONS.get(operation, (f"s3:{operation}", "object"))
        if unknown or level == "none":
            return [Need(action, "*")]
        _, _, key = resource.partition("/")
        if level == "bucket" or not key:
            return [Need(action, f"arn:{PARTITION}:s3:::{BUCKET}")]
        return [Need(action, f"arn:{PARTITION}:s3:::{BUCKET}/{key}")]
    return [Need(f"{service}:{operation}", "*")]


# ---------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    try:
        import yaml  # PyYAML: a dependency of aws-sam-cli and cfn-lint
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError("PyYAML is missing: pip install pyyaml (infra/check.sh installs it)") from e

    class CfnLoader(yaml.SafeLoader):
        """SafeLoader that turns CloudFormation's short tags (!Ref, !Sub, ...) into long form."""

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix == "Ref":
            return {"Ref": value}
        if suffix == "Condition":
            return {"Condition": value}
        if suffix == "GetAtt" and isinstance(value, str):
            resource, _, attribute = value.partition(".")
            return {"Fn::GetAtt": [resource, attribute]}
        return {f"Fn::{suffix}": value}

    CfnLoader.add_multi_constructor("!", construct)
    try:
        with path.open(encoding="utf-8") as handle:
            return yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - a SafeLoader subclass
    except OSError as e:
        raise InputError(f"cannot read {path} ({e.strerror})") from e


def load_template(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise InputError(f"cannot read {path} ({e.strerror}): run infra/check.sh (cdk synth) first") from e
    else:
        data = load_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise InputError(f"{path} is not a CloudFormation template")
    return data


def ref_value(kind: str, lid: str) -> str:
    """What !Ref of a resource resolves to, symbolically."""
    return {
        "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{symbol(kind, lid)}",
        "AWS::SQS::Queue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{symbol(kind, lid)}",
    }.get(kind, symbol(kind, lid))


def symbol(kind: str, lid: str) -> str:
    """A resource's physical name: the names recorded calls are mapped to, for the
    resources the code addresses, else ${LogicalId}."""
    if kind == "AWS::DynamoDB::Table":
        return TABLE
    if kind == "AWS::SNS::Topic":
        return TOPIC
    return "${" + lid + "}"


def getatt_value(kind: str, lid: str, attribute: str) -> str:
    name = symbol(kind, lid)
    arns = {
        ("AWS::DynamoDB::Table", "Arn"): f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}",
        ("AWS::DynamoDB::Table", "StreamArn"): f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}/stream/{STREAM_LABEL}",
        ("AWS::SNS::Topic", "TopicArn"): f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{name}",
        ("AWS::SQS::Queue", "Arn"): f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}",
        ("AWS::SQS::Queue", "QueueName"): name,
        ("AWS::KMS::Key", "Arn"): f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{name}",
        ("AWS::Logs::LogGroup", "Arn"): f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
        ("AWS::Kinesis::Stream", "Arn"): f"arn:{PARTITION}:kinesis:{REGION}:{ACCOUNT}:stream/{name}",
        ("AWS::IAM::Role", "Arn"): f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
        ("AWS::Lambda::Function", "Arn"): f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}",
        ("AWS::Serverless::Function", "Arn"): f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}",
    }
    return arns.get((kind, attribute), "${" + f"{lid}.{attribute}" + "}")


PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "${AWS::StackName}",
}


class Template:
    def __init__(self, label: str, data: dict[str, Any]) -> None:
        self.label = label
        self.resources: dict[str, dict[str, Any]] = data["Resources"]
        self.parameters: dict[str, Any] = data.get("Parameters") or {}

    def kind(self, lid: str) -> str:
        return self.resources[lid].get("Type", "")

    def resolve(self, value: Any) -> list[str]:
        """Every string `value` can take (Fn::If yields both branches; AWS::NoValue none)."""
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [v for item in value for v in self.resolve(item)]
        if not isinstance(value, dict) or len(value) != 1:
            raise InputError(f"{self.label}: cannot resolve {json.dumps(value)}")
        (fn, arg), = value.items()
        if fn == "Ref":
            return self._ref(arg)
        if fn == "Fn::GetAtt":
            lid, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return [self._getatt(lid, attribute)]
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return self._sub(text, variables)
        if fn == "Fn::Join":
            delimiter, parts = arg
            choices = [self.resolve(p) for p in (parts if isinstance(parts, list) else [parts])]
            return [delimiter.join(combo) for combo in itertools.product(*choices)]
        if fn == "Fn::If":
            _, yes, no = arg
            return self.resolve(yes) + self.resolve(no)
        raise InputError(f"{self.label}: {fn} is not supported in an IAM policy here: {json.dumps(value)}")

    def _ref(self, name: str) -> list[str]:
        if name == "AWS::NoValue":
            return []
        if name in PSEUDO:
            return [PSEUDO[name]]
        if name in self.resources:
            return [ref_value(self.kind(name), name)]
        if name in self.parameters:
            return ["${" + name + "}"]
        raise InputError(f"{self.label}: !Ref {name}: no such resource or parameter")

    def _getatt(self, lid: str, attribute: str) -> str:
        if lid not in self.resources:
            raise InputError(f"{self.label}: !GetAtt {lid}.{attribute}: no such resource")
        return getatt_value(self.kind(lid), lid, attribute)

    def _sub(self, text: str, variables: dict[str, Any]) -> list[str]:
        pieces: list[list[str]] = []
        pos = 0
        for m in re.finditer(r"\$\{([^}]*)\}", text):
            pieces.append([text[pos : m.start()]])
            name = m.group(1)
            if name.startswith("!"):
                pieces.append(["${" + name[1:] + "}"])
            elif name in variables:
                pieces.append(self.resolve(variables[name]))
            elif "." in name and name.split(".", 1)[0] in self.resources:
                pieces.append([self._getatt(*name.split(".", 1))])
            else:
                pieces.append(self._ref(name))
            pos = m.end()
        pieces.append([text[pos:]])
        return ["".join(combo) for combo in itertools.product(*pieces)]

    def role_of(self, function: str) -> str:
        if function not in self.resources:
            raise InputError(f"{self.label}: no function {function}")
        role = (self.resources[function].get("Properties") or {}).get("Role")
        if not (isinstance(role, dict) and "Fn::GetAtt" in role):
            raise InputError(
                f"{self.label}: the Role of {function} is not !GetAtt ROLE.Arn of a role in the "
                "template; give the function an explicit role (SAM policy templates are not checked)"
            )
        target = role["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else target.split(".", 1)[0]

    def role_documents(self, role: str) -> list[dict[str, Any]]:
        props = self.resources[role].get("Properties") or {}
        if props.get("ManagedPolicyArns"):
            raise InputError(
                f"{self.label}: {role} has managed policies, which this check cannot read; "
                "state the permissions inline"
            )
        documents = [p.get("PolicyDocument") or {} for p in props.get("Policies") or []]
        for policy in self.resources.values():
            if policy.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                pp = policy.get("Properties") or {}
                if {"Ref": role} in (pp.get("Roles") or []):
                    documents.append(pp.get("PolicyDocument") or {})
        return documents


# ---------------------------------------------------------------------------
# Policies
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Grant:
    """One action pattern on one resource pattern, from one statement."""

    effect: str
    action: str
    resource: str
    sid: str


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants_of(documents: Iterable[dict[str, Any]], resolve, where: str) -> list[Grant]:
    out = []
    for document in documents:
        for statement in as_list(document.get("Statement") or []):
            sid = statement.get("Sid", "")
            for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
                if unsupported in statement:
                    raise InputError(f"{where}: statement {sid or '?'} uses {unsupported}, which this check does not evaluate")
            effect = statement.get("Effect")
            if effect not in ("Allow", "Deny"):
                raise InputError(f"{where}: statement {sid or '?'} has Effect {effect!r}")
            resources = [r for value in as_list(statement.get("Resource", [])) for r in resolve(value)]
            for action in as_list(statement.get("Action", [])):
                for resource in resources:
                    out.append(Grant(effect, action, resource, sid))
    return out


def action_matches(pattern: str, action: str) -> bool:
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def resource_matches(pattern: str, arn: str) -> bool:
    # IAM: * and ? are wildcards, everything else literal (including [ and ]).
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn, flags=re.DOTALL) is not None


def allowed(grants: list[Grant], need: Need) -> bool:
    """Allowed by some Allow and denied by no Deny. An unknown resource ("*": the
    request named none) is allowed when some Allow grants the action at all."""

    def hits(g: Grant) -> bool:
        if not action_matches(g.action, need.action):
            return False
        return need.resource == "*" or resource_matches(g.resource, need.resource)

    if any(hits(g) for g in grants if g.effect == "Deny" and (need.resource != "*" or g.resource == "*")):
        return False
    return any(hits(g) for g in grants if g.effect == "Allow")


def used(grant: Grant, needs: Iterable[Need]) -> bool:
    return any(
        action_matches(grant.action, n.action) and (n.resource == "*" or resource_matches(grant.resource, n.resource))
        for n in needs
    )


def operator_resolve(value: Any) -> list[str]:
    if not isinstance(value, str):
        raise InputError(f"operator policy: Resource {json.dumps(value)} is not a string")
    for placeholder, symbol_ in OPERATOR_PLACEHOLDERS.items():
        value = value.replace(placeholder, symbol_)
    left = re.findall(r"\$\{(?!AWS::)[^}]*\}", value)
    if [p for p in left if p not in OPERATOR_PLACEHOLDERS.values()]:
        raise InputError(
            f"operator policy: unknown placeholder in {value}; use {', '.join(OPERATOR_PLACEHOLDERS)}"
        )
    return [value]


def load_operator_policy(path: Path) -> list[Grant]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read the operator policy {path}: {e}") from e
    return grants_of([document], operator_resolve, f"{path.name}")


def load_justifications(path: Path) -> dict[str, dict[str, str]]:
    data = load_yaml(path) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"{path}: expected PRINCIPAL: {{ACTION: why}} mappings")
    for principal, entries in data.items():
        for action, why in entries.items():
            if not isinstance(why, str) or len(why.strip()) < 10:
                raise InputError(f"{path}: {principal} {action}: say why in a sentence")
    return data


# ---------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------
@dataclass
class Principal:
    """A role in one template, or the operator policy: its grants and its callers."""

    name: str  # role logical id, or "operator"
    where: str  # "SAM", "CDK", "operator-policy.json"
    grants: list[Grant]
    components: set[str] = field(default_factory=set)


@dataclass
class Report:
    rows: list[tuple[str, int, str, str, dict[str, str]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def grouped(arn: str) -> str:
    """An S3 object ARN stands for every key read: `arn:aws:s3:::BUCKET/<key>`."""
    prefix = f"arn:{PARTITION}:s3:::"
    if arn.startswith(prefix) and "/" in arn[len(prefix) :]:
        return arn[len(prefix) :].split("/", 1)[0].join((prefix, "/<key>"))
    return arn


def short(arn: str) -> str:
    """The readable tail of a symbolic ARN."""
    for prefix in (f"arn:{PARTITION}:s3:::",):
        if arn.startswith(prefix):
            return "s3:::" + arn[len(prefix) :]
    marker = f":{ACCOUNT}:"
    return arn.split(marker, 1)[1] if marker in arn else arn


def check(
    calls: list[dict[str, Any]],
    templates: list[Template],
    operator: list[Grant] | None,
    justifications: dict[str, dict[str, str]],
) -> Report:
    report = Report()
    needs_by_component: dict[str, Counter[Need]] = {}
    for call in calls:
        component = call["component"]
        if component == HARNESS:
            continue
        if component not in FUNCTIONS and not component.startswith("cli "):
            report.violations.append(
                f"unknown component `{component}`: map it to a function in FUNCTIONS of infra/iam_check.py, "
                "or label set-up clients `test-harness`"
            )
            continue
        needs_by_component.setdefault(component, Counter()).update(needs_of(call))

    principals: dict[str, list[Principal]] = {}
    for t in templates:
        for component, function in FUNCTIONS.items():
            role = t.role_of(function)
            p = next((p for p in principals.get(component, []) if p.where == t.label and p.name == role), None)
            if p is None:
                p = Principal(role, t.label, grants_of(t.role_documents(role), t.resolve, f"{t.label} {role}"))
            p.components.add(component)
            principals.setdefault(component, []).append(p)
    if operator is not None:
        op = Principal(OPERATOR, "operator-policy.json", operator)
        principals["cli"] = [op]  # checked for unused grants even when no CLI call was recorded
        for component in needs_by_component:
            if component.startswith("cli "):
                op.components.add(component)
                principals.setdefault(component, []).append(op)

    # 1. every recorded call is allowed (S3 objects shown as one row per action)
    for component in sorted(needs_by_component):
        groups: dict[tuple[str, str], list[tuple[Need, int]]] = {}
        for need, count in needs_by_component[component].items():
            groups.setdefault((need.action, grouped(need.resource)), []).append((need, count))
        for (action, resource), members in sorted(groups.items()):
            verdicts = {}
            for p in principals.get(component, []):
                denied = [n for n, _ in members if not allowed(p.grants, n)]
                verdicts[p.where] = "DENIED" if denied else "ok"
                if denied:
                    example = f" ({len(denied)} objects, e.g. {denied[0].resource})" if len(members) > 1 else ""
                    report.violations.append(
                        f"{component}: {action} on {resource}{example} is not allowed by {p.name} ({p.where})"
                    )
            calls_seen = sum(c for _, c in members)
            report.rows.append((component, calls_seen, action, short(resource), verdicts))
    for component in FUNCTIONS:
        if component not in needs_by_component:
            report.violations.append(
                f"no calls recorded for {component}: run the tests that exercise it with BEDROCK_METER_CALL_LOG set"
            )

    # 2. every grant is used or justified; every justification matches a grant
    seen: set[int] = set()
    justified_used: set[tuple[str, str]] = set()
    for plist in principals.values():
        for p in plist:
            if id(p) in seen:
                continue
            seen.add(id(p))
            needs = [n for c in p.components for n in needs_by_component.get(c, {})]
            reasons = justifications.get(p.name, {})
            for g in p.grants:
                if g.effect != "Allow":
                    continue
                if used(g, needs):
                    if g.action in reasons:
                        justified_used.add((p.name, g.action))
                    continue
                if g.action in reasons:
                    continue
                report.violations.append(
                    f"{p.name} ({p.where}) grants {g.action} on {short(g.resource)} (statement {g.sid or '-'}), "
                    "which no recorded call used: remove it, or say why it stays in infra/iam-justifications.yaml"
                )
    granted = {(p.name, g.action) for plist in principals.values() for p in plist for g in p.grants}
    for principal, entries in justifications.items():
        for action in entries:
            if (principal, action) not in granted:
                report.violations.append(
                    f"infra/iam-justifications.yaml: {principal} {action} is granted by no checked policy: delete the entry"
                )
    for principal, action in sorted(justified_used):
        report.notes.append(f"{principal} {action} is justified and was also used by a recorded call")
    return report


def render(report: Report, columns: list[str]) -> str:
    lines = []
    width_c = max([len("component")] + [len(r[0]) for r in report.rows])
    width_a = max([len("action")] + [len(r[2]) for r in report.rows])
    width_r = max([len("resource")] + [len(r[3]) for r in report.rows])
    head = f"{'component':<{width_c}} {'calls':>6}  {'action':<{width_a}} {'resource':<{width_r}}  verdict"
    lines += [head, "-" * len(head)]
    for component, count, action, resource, verdicts in report.rows:
        verdict = ", ".join(f"{k} {v}" for k, v in verdicts.items())
        lines.append(f"{component:<{width_c}} {count:>6}  {action:<{width_a}} {resource:<{width_r}}  {verdict}")
    lines.append("")
    lines.append(f"checked against: {', '.join(columns)}")
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("calls", type=Path, help="the JSON-lines call log (BEDROCK_METER_CALL_LOG)")
    parser.add_argument("--sam", type=Path, default=HERE / "template.yaml")
    parser.add_argument("--cdk", type=Path, help="the synthesized BedrockMeter.template.json (infra/check.sh --keep)")
    parser.add_argument("--operator", type=Path, default=HERE / "operator-policy.json")
    parser.add_argument("--justifications", type=Path, default=HERE / "iam-justifications.yaml")
    args = parser.parse_args(argv)
    try:
        calls = load_calls(args.calls)
        templates = [Template("SAM", load_template(args.sam))]
        if args.cdk:
            templates.append(Template("CDK", load_template(args.cdk)))
        operator = load_operator_policy(args.operator)
        justifications = load_justifications(args.justifications)
        report = check(calls, templates, operator, justifications)
    except InputError as e:
        print(f"iam_check.py: {e}", file=sys.stderr)
        return 2
    columns = [t.label for t in templates] + ["operator-policy.json (cli *)"]
    print(render(report, columns))
    if not args.cdk:
        print("note: no --cdk template given: the CDK roles were not checked")
    if report.violations:
        print(f"\niam_check.py: {len(report.violations)} violation(s):", file=sys.stderr)
        for v in report.violations:
            print(f"  - {v}", file=sys.stderr)
        return 1
    print(f"\niam_check.py: every recorded call is allowed and every permission is used or justified "
          f"({len(calls)} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
