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
  * each function (ingest, budget-alerts, kinesis-ingest): condition, name, Runtime,
    Architectures, MemorySize, Timeout, Handler, environment, logging configuration,
    role, asynchronous invocation config (retries, event age, on-failure destination),
    and the IAM actions its role is granted (inline policies and attached
    AWS::IAM::Policy resources; logs:* actions and the AWS-managed basic execution
    policy excluded: both templates scope logging to the function's own log group)
    with the resources each is granted on;
  * every other resource by logical id (queues, queue and topic policies, roles, the
    KMS key and its policy, the topic, the Kinesis stream, subscription filters, the
    invoke permission, the CloudWatch Logs destination, event source mappings, log
    groups, alarms): type, condition, DependsOn, deletion policies and properties;
  * conditions (definitions), outputs (values and conditions), and parameters;
  * the Architecture parameter: CDK fixes it at synth time (context `architecture`)
    and allows only that value, which SAM must allow too.

References are compared by what they point at, "<Type> <logical id>": the CDK app
gives every resource the logical id it has in the SAM template, so that switching
tools never replaces a resource. Policy statements are compared without Sid (CDK's
enforceSSL writes none) and with Action/Resource as sorted lists.

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

# Parameters fixed at synth time in CDK (by a context value, because the asset is
# compiled for them): the CDK template allows only the value it was synthesized
# with, the SAM template allows every value. Checked by build_time_parameters().
BUILD_TIME_PARAMETERS = {"Architecture"}


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
                return f"Ref({self.kind(target)} {target})"
            if target in self.parameters:
                return f"Ref(Parameter {target})"
            return f"Ref({target})"
        if set(value) == {"Fn::GetAtt"}:
            target, attribute = value["Fn::GetAtt"]
            kind = f"{self.kind(target)} {target}" if target in self.resources else target
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

    # -- functions ------------------------------------------------------------
    FUNCTION_TYPES = ("AWS::Lambda::Function", "AWS::Serverless::Function")

    def functions(self) -> dict[str, dict[str, Any]]:
        """The Rust functions (Handler bootstrap), by logical id."""
        return {
            k: v
            for k, v in self.of_type(*self.FUNCTION_TYPES).items()
            if (v.get("Properties") or {}).get("Handler") == "bootstrap"
        }

    def function(self, logical_id: str) -> dict[str, Any]:
        fn = self.functions().get(logical_id)
        if fn is None:
            raise LookupError(f"{self.name}: no function {logical_id} (found {sorted(self.functions())})")
        return fn

    def function_facts(self, logical_id: str) -> dict[str, Any]:
        fn = self.function(logical_id)
        p = fn.get("Properties", {})
        variables = ((p.get("Environment") or {}).get("Variables")) or {}
        return {
            "Condition": fn.get("Condition"),
            "FunctionName": self.describe(p.get("FunctionName")),
            "Runtime": p.get("Runtime"),
            "Architectures": self.describe(p.get("Architectures")),
            "MemorySize": p.get("MemorySize"),
            "Timeout": p.get("Timeout"),
            "Handler": p.get("Handler"),
            "EnvironmentVariables": {k: self.describe(v) for k, v in sorted(variables.items())},
            "LoggingConfig": self.describe(p.get("LoggingConfig")),
            "ReservedConcurrentExecutions": p.get("ReservedConcurrentExecutions"),
            "Role": self.describe(p.get("Role")),
        }

    def async_invoke(self, logical_id: str) -> dict[str, Any] | None:
        fn = self.function(logical_id)
        if fn["Type"] == "AWS::Serverless::Function":
            cfg = (fn.get("Properties") or {}).get("EventInvokeConfig")
            if cfg is None:
                return None
        else:
            found = [
                r.get("Properties") or {}
                for r in self.of_type("AWS::Lambda::EventInvokeConfig").values()
                if (r.get("Properties") or {}).get("FunctionName") == {"Ref": logical_id}
            ]
            if not found:
                return None
            if len(found) > 1:
                raise LookupError(f"{self.name}: several EventInvokeConfig for {logical_id}")
            cfg = found[0]
        dest = ((cfg.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        return {
            "MaximumRetryAttempts": cfg.get("MaximumRetryAttempts"),
            "MaximumEventAgeInSeconds": cfg.get("MaximumEventAgeInSeconds"),
            "OnFailureDestination": self.describe(dest),
        }

    def role_grants(self, logical_id: str) -> dict[str, list[Any]]:
        """action -> resources granted to a function's role (inline policies and
        AWS::IAM::Policy resources attached to it), without logs:* actions; managed
        policies other than the basic execution role are listed under "ManagedPolicyArns"."""
        role_ref = (self.function(logical_id).get("Properties") or {}).get("Role")
        if not (isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref):
            raise LookupError(f"{self.name}: the Role of {logical_id} is not a GetAtt of a role in the template")
        role_id = role_ref["Fn::GetAtt"][0]
        role = self.resources[role_id]
        documents = [p.get("PolicyDocument", {}) for p in (role.get("Properties") or {}).get("Policies", [])]
        for policy in self.of_type("AWS::IAM::Policy").values():
            pp = policy.get("Properties") or {}
            if {"Ref": role_id} in (pp.get("Roles") or []):
                documents.append(pp.get("PolicyDocument", {}))
        grants: dict[str, list[Any]] = {}
        for document in documents:
            for statement in as_list(document.get("Statement", [])):
                if statement.get("Effect") != "Allow":
                    continue
                for action in as_list(statement.get("Action", [])):
                    if action.lower().startswith("logs:"):
                        continue
                    for resource in as_list(statement.get("Resource", [])):
                        grants.setdefault(action, []).append(self.describe(resource))
        out: dict[str, list[Any]] = {k: sorted(v, key=json.dumps) for k, v in sorted(grants.items())}
        managed = [
            self.describe(arn)
            for arn in (role.get("Properties") or {}).get("ManagedPolicyArns", [])
            if "AWSLambdaBasicExecutionRole" not in json.dumps(arn)
        ]
        out["ManagedPolicyArns"] = managed
        return out

    # -- every other resource, by logical id ----------------------------------
    def other_resources(self) -> dict[str, dict[str, Any]]:
        """Every resource except the table and the functions (checked above), and
        what only one tool adds (CDK's metadata and EventInvokeConfig, compared with
        the function), normalised: references by logical id, policy statements
        without Sid and with Action/Resource as sorted lists, the default deletion
        policies made explicit."""
        skip = set(self.of_type("AWS::DynamoDB::Table", "AWS::CDK::Metadata", "AWS::Lambda::EventInvokeConfig"))
        skip |= set(self.functions())
        out = {}
        for logical_id, resource in sorted(self.resources.items()):
            if logical_id in skip:
                continue
            out[logical_id] = {
                "Type": resource.get("Type"),
                "Condition": resource.get("Condition"),
                "DependsOn": sorted(as_list(resource.get("DependsOn", []))),
                "DeletionPolicy": resource.get("DeletionPolicy", "Delete"),
                "UpdateReplacePolicy": resource.get("UpdateReplacePolicy", "Delete"),
                "Properties": normalise_policies(self.describe(resource.get("Properties") or {})),
            }
        return out

    def conditions(self) -> dict[str, Any]:
        return {
            k: self.describe(v)
            for k, v in sorted(self.data.get("Conditions", {}).items())
            if k not in CDK_ONLY_CONDITIONS
        }

    def outputs(self) -> dict[str, Any]:
        return {
            k: {"Value": self.describe(v.get("Value")), "Condition": v.get("Condition")}
            for k, v in sorted(self.data.get("Outputs", {}).items())
        }

    def names(self) -> dict[str, Any]:
        return {
            "Parameters": {
                k: {
                    f: v.get(f)
                    for f in ("Type", "Default", "AllowedValues")
                    if not (k in BUILD_TIME_PARAMETERS and f == "AllowedValues")
                }
                for k, v in sorted(self.parameters.items())
                if k not in CDK_ONLY_PARAMETERS
            },
            "Conditions": sorted(k for k in self.data.get("Conditions", {}) if k not in CDK_ONLY_CONDITIONS),
            "Outputs": sorted(self.data.get("Outputs", {})),
        }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


POLICY_LIST_KEYS = ("Action", "NotAction", "Resource", "NotResource")


def normalise_policies(value: Any) -> Any:
    """Policy statements compare without their Sid (CDK's enforceSSL adds none) and with
    Action/Resource as sorted lists (CDK writes a single action as a string)."""
    if isinstance(value, list):
        return [normalise_policies(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "Effect" in value and ("Action" in value or "NotAction" in value):
        out = {k: normalise_policies(v) for k, v in value.items() if k != "Sid"}
        for key in POLICY_LIST_KEYS:
            if key in out:
                out[key] = sorted(as_list(out[key]), key=json.dumps)
        return out
    return {k: normalise_policies(v) for k, v in value.items()}


def build_time_parameters(sam: Template, cdk: Template) -> list[str]:
    """Problems with the parameters CDK fixes at synth time: CDK must allow exactly its
    default (the value the asset was built for), and SAM must allow that value too."""
    problems = []
    for name in sorted(BUILD_TIME_PARAMETERS):
        s, c = sam.parameters.get(name), cdk.parameters.get(name)
        if s is None or c is None:
            problems.append(f"{name}: missing from {'SAM' if s is None else 'CDK'}")
            continue
        if c.get("AllowedValues") != [c.get("Default")]:
            problems.append(f"{name}: CDK AllowedValues {c.get('AllowedValues')} is not [Default {c.get('Default')!r}]")
        if c.get("Default") not in (s.get("AllowedValues") or []):
            problems.append(f"{name}: CDK value {c.get('Default')!r} not in SAM AllowedValues {s.get('AllowedValues')}")
    return problems


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
    ]
    for fn_id in sorted(set(sam.functions()) | set(cdk.functions())):
        checks += [
            (f"function {fn_id}", lambda t, i=fn_id: t.function_facts(i)),
            (f"function {fn_id}: asynchronous invocation", lambda t, i=fn_id: t.async_invoke(i)),
            (f"function {fn_id}: role grants (logs:* excluded)", lambda t, i=fn_id: t.role_grants(i)),
        ]
    for res_id in sorted(set(sam.other_resources()) | set(cdk.other_resources())):

        def extract(t: Template, i: str = res_id) -> Any:
            found = t.other_resources().get(i)
            if found is None:
                raise LookupError(f"{t.name}: no resource {i}")
            return found

        checks.append((f"resource {res_id}", extract))
    checks += [
        ("conditions", lambda t: t.conditions()),
        ("outputs", lambda t: t.outputs()),
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

    total = len(checks) + 1
    problems = build_time_parameters(sam, cdk)
    label = f"build-time parameters {sorted(BUILD_TIME_PARAMETERS)} (CDK allows only its synth value)"
    if problems:
        failures += 1
        print(f"FAIL  {label}")
        for problem in problems:
            print(f"      {problem}")
    else:
        print(f"ok    {label}")

    if failures:
        print(f"parity: {failures} of {total} checks differ")
        return 1
    print(f"parity: all {total} checks match")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
