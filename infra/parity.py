#!/usr/bin/env python3
"""Check that the SAM template and the synthesized CDK template declare the same stack.

Usage: parity.py [SAM_TEMPLATE] CDK_TEMPLATE_JSON

SAM_TEMPLATE defaults to infra/template.yaml beside this script. CDK_TEMPLATE_JSON is
the BedrockMeter.template.json that `cdk synth` wrote (infra/check.sh passes it).

Standard library only, plus PyYAML (installed with aws-sam-cli and cfn-lint) to read
the SAM template; CloudFormation short-form tags (!Ref, !Sub, !GetAtt, !If, ...) are
turned into their long form by a custom loader.

What is compared (each line of output says which):
  * the usage table: KeySchema, AttributeDefinitions, GSIs, TTL attribute, stream view
    type, billing mode, point-in-time recovery, SSE, deletion protection, name;
  * the ingest function: Runtime, Architectures, MemorySize, Timeout, Handler,
    environment variable names and values, logging configuration, asynchronous
    invocation config (retries, event age, on-failure destination);
  * the IAM actions granted to the function's role (logs:* actions and the
    AWS-managed basic execution policy excluded: both templates scope logging to
    the function's own log group), which resource each action is granted on, and
    any other managed policy attached to the role;
  * the on-failure queue, the subscription filter, the invoke permission, the
    alarms, and the names of parameters, conditions and outputs.

References are compared by what they point at (Ref/GetAtt of a resource become
"<Type>.<attr>"), so renamed logical ids do not cause false alarms.

Exit status: 0 when everything matches, 1 on any difference (with a diff), 2 on
bad input.
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent

# Parameters and conditions that only one tool adds by itself.
CDK_ONLY_PARAMETERS = {"BootstrapVersion"}
CDK_ONLY_CONDITIONS = {"CDKMetadataAvailable"}


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------
def load_yaml_template(path: Path) -> dict[str, Any]:
    try:
        import yaml  # PyYAML, a dependency of aws-sam-cli and cfn-lint
    except ImportError:  # pragma: no cover - depends on the environment
        sys.exit(
            "parity.py: PyYAML is missing; `pip install aws-sam-cli cfn-lint` brings it "
            "(infra/check.sh does)."
        )

    class CfnLoader(yaml.SafeLoader):
        """SafeLoader that understands CloudFormation's short-form intrinsic tags."""

    def construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if tag_suffix == "Ref":
            return {"Ref": value}
        if tag_suffix == "Condition":
            return {"Condition": value}
        if tag_suffix == "GetAtt" and isinstance(value, str):
            resource, _, attribute = value.partition(".")
            return {"Fn::GetAtt": [resource, attribute]}
        return {f"Fn::{tag_suffix}": value}

    CfnLoader.add_multi_constructor("!", construct_tag)
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        sys.exit(f"parity.py: {path} is not a CloudFormation template")
    return data


def load_json_template(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict) or "Resources" not in data:
        sys.exit(f"parity.py: {path} is not a CloudFormation template")
    return data


# ---------------------------------------------------------------------------
# Normalising one template into comparable facts
# ---------------------------------------------------------------------------
class Template:
    def __init__(self, name: str, data: dict[str, Any]) -> None:
        self.name = name
        self.data = data
        self.resources: dict[str, dict[str, Any]] = data.get("Resources", {})
        self.parameters: dict[str, Any] = data.get("Parameters", {})

    # -- lookup ---------------------------------------------------------------
    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") in types}

    def one(self, *types: str, where: Callable[[dict[str, Any]], bool] | None = None) -> tuple[str, dict[str, Any]]:
        found = {k: v for k, v in self.of_type(*types).items() if where is None or where(v)}
        if len(found) != 1:
            raise LookupError(
                f"{self.name}: expected exactly one {'/'.join(types)} resource, found {sorted(found) or 'none'}"
            )
        return next(iter(found.items()))

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id].get("Properties", {}) or {}

    # -- describing intrinsic values independently of logical ids --------------
    def kind(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        # SAM turns AWS::Serverless::Function into an AWS::Lambda::Function of the
        # same logical id, which is what Ref and GetAtt then point at.
        return "AWS::Lambda::Function" if kind == "AWS::Serverless::Function" else kind

    def describe(self, value: Any) -> Any:
        """Replace references to resources by their type, so that two templates that
        name a resource differently but point at the same kind of thing compare equal."""
        if isinstance(value, list):
            return [self.describe(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            target = value["Ref"]
            if target in self.resources:
                return f"Ref({self.kind(target)})"
            if target in self.parameters:
                return f"Ref(Parameter {target})"
            return f"Ref({target})"
        if set(value) == {"Fn::GetAtt"}:
            target, attribute = value["Fn::GetAtt"]
            kind = self.kind(target) if target in self.resources else target
            return f"GetAtt({kind}.{attribute})"
        if set(value) == {"Fn::Sub"}:
            sub = value["Fn::Sub"]
            if isinstance(sub, list):
                # Inline ${Var} whose value is a plain Ref, to match the one-argument form.
                text, variables = sub[0], sub[1]
                for var, var_value in variables.items():
                    if isinstance(var_value, dict) and set(var_value) == {"Ref"}:
                        text = text.replace("${" + var + "}", "${" + var_value["Ref"] + "}")
                    else:
                        return {"Fn::Sub": [text, self.describe(variables)]}
                return {"Fn::Sub": text}
            return {"Fn::Sub": sub}
        return {k: self.describe(v) for k, v in value.items()}

    # -- facts ----------------------------------------------------------------
    def table(self) -> dict[str, Any]:
        _, table = self.one("AWS::DynamoDB::Table")
        p = table.get("Properties", {})
        sse = dict(p.get("SSESpecification") or {})
        # DynamoDB: SSEEnabled true without SSEType means SSEType KMS with the AWS
        # managed key (alias/aws/dynamodb); CDK's TableEncryption.AWS_MANAGED omits it.
        if sse.get("SSEEnabled") is True and "SSEType" not in sse:
            sse["SSEType"] = "KMS"
        return {
            "TableName": self.describe(p.get("TableName")),
            "BillingMode": p.get("BillingMode"),
            "KeySchema": p.get("KeySchema"),
            "AttributeDefinitions": sorted(
                p.get("AttributeDefinitions", []), key=lambda a: a.get("AttributeName", "")
            ),
            "GlobalSecondaryIndexes": sorted(
                (
                    {
                        "IndexName": g.get("IndexName"),
                        "KeySchema": g.get("KeySchema"),
                        "Projection": g.get("Projection"),
                    }
                    for g in p.get("GlobalSecondaryIndexes", [])
                ),
                key=lambda g: g["IndexName"] or "",
            ),
            "TimeToLiveAttribute": (p.get("TimeToLiveSpecification") or {}).get("AttributeName")
            if (p.get("TimeToLiveSpecification") or {}).get("Enabled") is True
            else None,
            "StreamViewType": (p.get("StreamSpecification") or {}).get("StreamViewType"),
            "PointInTimeRecoveryEnabled": (p.get("PointInTimeRecoverySpecification") or {}).get(
                "PointInTimeRecoveryEnabled"
            ),
            "SSESpecification": sse,
            "DeletionProtectionEnabled": self.describe(p.get("DeletionProtectionEnabled")),
            "DeletionPolicy": table.get("DeletionPolicy"),
            "UpdateReplacePolicy": table.get("UpdateReplacePolicy"),
        }

    def function(self) -> tuple[str, dict[str, Any]]:
        return self.one(
            "AWS::Lambda::Function",
            "AWS::Serverless::Function",
            where=lambda r: (r.get("Properties") or {}).get("Handler") == "bootstrap",
        )

    def function_facts(self) -> dict[str, Any]:
        _, fn = self.function()
        p = fn.get("Properties", {})
        variables = ((p.get("Environment") or {}).get("Variables")) or {}
        return {
            "Runtime": p.get("Runtime"),
            "Architectures": p.get("Architectures"),
            "MemorySize": p.get("MemorySize"),
            "Timeout": p.get("Timeout"),
            "Handler": p.get("Handler"),
            "EnvironmentVariableNames": sorted(variables),
            "EnvironmentVariables": {k: self.describe(v) for k, v in sorted(variables.items())},
            "LoggingConfig": self.describe(p.get("LoggingConfig")),
            "ReservedConcurrentExecutions": p.get("ReservedConcurrentExecutions"),
        }

    def async_invoke(self) -> dict[str, Any]:
        fn_id, fn = self.function()
        if fn["Type"] == "AWS::Serverless::Function":
            cfg = dict((fn.get("Properties") or {}).get("EventInvokeConfig") or {})
            dest = (cfg.get("DestinationConfig") or {}).get("OnFailure") or {}
            on_failure = self.describe(dest.get("Destination"))
        else:
            _, res = self.one(
                "AWS::Lambda::EventInvokeConfig",
                where=lambda r: (r.get("Properties") or {}).get("FunctionName") == {"Ref": fn_id},
            )
            cfg = res.get("Properties", {})
            on_failure = self.describe(
                ((cfg.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            )
        return {
            "MaximumRetryAttempts": cfg.get("MaximumRetryAttempts"),
            "MaximumEventAgeInSeconds": cfg.get("MaximumEventAgeInSeconds"),
            "OnFailureDestination": on_failure,
        }

    def role_grants(self) -> tuple[list[str], dict[str, list[Any]], list[Any]]:
        """(actions, action -> resources, managed policy ARNs) of the function's role,
        without logs:* actions and without the AWS-managed basic execution policy."""
        _, fn = self.function()
        role_ref = (fn.get("Properties") or {}).get("Role")
        if not (isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref):
            raise LookupError(f"{self.name}: the function's Role is not a GetAtt of a role in the template")
        role_id = role_ref["Fn::GetAtt"][0]
        role = self.resources[role_id]
        documents = [p.get("PolicyDocument", {}) for p in (role.get("Properties") or {}).get("Policies", [])]
        for policy in self.of_type("AWS::IAM::Policy").values():
            pp = policy.get("Properties") or {}
            if {"Ref": role_id} in (pp.get("Roles") or []):
                documents.append(pp.get("PolicyDocument", {}))
        grants: dict[str, list[Any]] = {}
        for document in documents:
            statements = document.get("Statement", [])
            for statement in statements if isinstance(statements, list) else [statements]:
                if statement.get("Effect") != "Allow":
                    continue
                actions = statement.get("Action", [])
                resources = statement.get("Resource", [])
                for action in actions if isinstance(actions, list) else [actions]:
                    if action.lower().startswith("logs:"):
                        continue
                    for resource in resources if isinstance(resources, list) else [resources]:
                        grants.setdefault(action, []).append(self.describe(resource))
        managed = [
            arn
            for arn in (role.get("Properties") or {}).get("ManagedPolicyArns", [])
            if "AWSLambdaBasicExecutionRole" not in json.dumps(arn)
        ]
        return (
            sorted(grants),
            {k: sorted(v, key=json.dumps) for k, v in sorted(grants.items())},
            [self.describe(m) for m in managed],
        )

    def queue(self) -> dict[str, Any]:
        _, q = self.one("AWS::SQS::Queue")
        p = q.get("Properties", {})
        policies = [
            self.describe(r["Properties"].get("PolicyDocument", {}).get("Statement"))
            for r in self.of_type("AWS::SQS::QueuePolicy").values()
        ]
        for statements in policies:
            for s in statements:
                s.pop("Sid", None)
        return {
            "MessageRetentionPeriod": p.get("MessageRetentionPeriod"),
            "SqsManagedSseEnabled": p.get("SqsManagedSseEnabled"),
            "KmsMasterKeyId": self.describe(p.get("KmsMasterKeyId")),
            "QueuePolicyStatements": policies,
        }

    def source(self) -> dict[str, Any]:
        _, sub = self.one("AWS::Logs::SubscriptionFilter")
        _, perm = self.one("AWS::Lambda::Permission")
        _, group = self.one("AWS::Logs::LogGroup")
        sp, pp, gp = sub.get("Properties", {}), perm.get("Properties", {}), group.get("Properties", {})
        return {
            "SubscriptionFilter": {
                k: self.describe(sp.get(k)) for k in ("FilterName", "LogGroupName", "FilterPattern", "DestinationArn")
            },
            "Permission": {
                k: self.describe(pp.get(k))
                for k in ("Action", "FunctionName", "Principal", "SourceArn", "SourceAccount")
            },
            "FunctionLogGroup": {k: self.describe(gp.get(k)) for k in ("LogGroupName", "RetentionInDays")},
        }

    def alarms(self) -> list[dict[str, Any]]:
        keys = (
            "Namespace",
            "MetricName",
            "Dimensions",
            "Statistic",
            "Period",
            "EvaluationPeriods",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "AlarmActions",
            "OKActions",
        )
        found = [
            {k: self.describe((r.get("Properties") or {}).get(k)) for k in keys}
            for r in self.of_type("AWS::CloudWatch::Alarm").values()
        ]
        return sorted(found, key=lambda a: (a["Namespace"] or "", a["MetricName"] or ""))

    def names(self) -> dict[str, Any]:
        return {
            "Parameters": {
                k: {f: v.get(f) for f in ("Type", "Default", "AllowedValues")}
                for k, v in sorted(self.parameters.items())
                if k not in CDK_ONLY_PARAMETERS
            },
            "Conditions": sorted(k for k in self.data.get("Conditions", {}) if k not in CDK_ONLY_CONDITIONS),
            "Outputs": sorted(self.data.get("Outputs", {})),
        }


def normalise_parameter_values(names: dict[str, Any]) -> dict[str, Any]:
    """CDK writes Number defaults and allowed values as the YAML parser would not:
    compare them as strings."""
    out = json.loads(json.dumps(names))
    for spec in out["Parameters"].values():
        if spec.get("Default") is not None:
            spec["Default"] = str(spec["Default"])
        if spec.get("AllowedValues") is not None:
            spec["AllowedValues"] = [str(v) for v in spec["AllowedValues"]]
    return out


# ---------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------
def render(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def summary(value: Any, width: int = 110) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 3] + "..."


def main(argv: list[str]) -> int:
    if len(argv) == 1:
        sam_path, cdk_path = HERE / "template.yaml", Path(argv[0])
    elif len(argv) == 2:
        sam_path, cdk_path = Path(argv[0]), Path(argv[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for path in (sam_path, cdk_path):
        if not path.is_file():
            print(f"parity.py: no such file: {path}", file=sys.stderr)
            return 2

    sam = Template(f"SAM ({sam_path.name})", load_yaml_template(sam_path))
    cdk = Template(f"CDK ({cdk_path.name})", load_json_template(cdk_path))

    checks: list[tuple[str, Callable[[Template], Any]]] = [
        ("table.TableName", lambda t: t.table()["TableName"]),
        ("table.BillingMode", lambda t: t.table()["BillingMode"]),
        ("table.KeySchema", lambda t: t.table()["KeySchema"]),
        ("table.AttributeDefinitions", lambda t: t.table()["AttributeDefinitions"]),
        ("table.GlobalSecondaryIndexes", lambda t: t.table()["GlobalSecondaryIndexes"]),
        ("table.TimeToLiveAttribute", lambda t: t.table()["TimeToLiveAttribute"]),
        ("table.StreamViewType", lambda t: t.table()["StreamViewType"]),
        ("table.PointInTimeRecoveryEnabled", lambda t: t.table()["PointInTimeRecoveryEnabled"]),
        ("table.SSESpecification", lambda t: t.table()["SSESpecification"]),
        ("table.DeletionProtectionEnabled", lambda t: t.table()["DeletionProtectionEnabled"]),
        ("table.DeletionPolicy/UpdateReplacePolicy", lambda t: [t.table()["DeletionPolicy"], t.table()["UpdateReplacePolicy"]]),
        ("function.Runtime", lambda t: t.function_facts()["Runtime"]),
        ("function.Architectures", lambda t: t.function_facts()["Architectures"]),
        ("function.MemorySize", lambda t: t.function_facts()["MemorySize"]),
        ("function.Timeout", lambda t: t.function_facts()["Timeout"]),
        ("function.Handler", lambda t: t.function_facts()["Handler"]),
        ("function.ReservedConcurrentExecutions", lambda t: t.function_facts()["ReservedConcurrentExecutions"]),
        ("function.EnvironmentVariableNames", lambda t: t.function_facts()["EnvironmentVariableNames"]),
        ("function.EnvironmentVariables", lambda t: t.function_facts()["EnvironmentVariables"]),
        ("function.LoggingConfig", lambda t: t.function_facts()["LoggingConfig"]),
        ("function.AsyncInvokeConfig", lambda t: t.async_invoke()),
        ("role.Actions (logs:* excluded)", lambda t: t.role_grants()[0]),
        ("role.ActionResources (logs:* excluded)", lambda t: t.role_grants()[1]),
        ("role.ManagedPolicyArns", lambda t: t.role_grants()[2]),
        ("queue", lambda t: t.queue()),
        ("source (subscription, permission, log group)", lambda t: t.source()),
        ("alarms", lambda t: t.alarms()),
        ("names (parameters, conditions, outputs)", lambda t: normalise_parameter_values(t.names())),
    ]

    failures = 0
    print(f"parity: {sam_path} <-> {cdk_path}")
    for label, extract in checks:
        try:
            left, right = extract(sam), extract(cdk)
        except LookupError as error:
            failures += 1
            print(f"FAIL  {label}: {error}")
            continue
        if left == right:
            print(f"ok    {label}: {summary(left)}")
            continue
        failures += 1
        print(f"FAIL  {label}: SAM and CDK differ")
        diff = difflib.unified_diff(
            render(left).splitlines(),
            render(right).splitlines(),
            fromfile=sam.name,
            tofile=cdk.name,
            lineterm="",
        )
        for line in diff:
            print(f"      {line}")

    total = len(checks)
    if failures:
        print(f"parity: {failures} of {total} checks differ")
        return 1
    print(f"parity: all {total} checks match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
