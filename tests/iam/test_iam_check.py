"""Unit tests of infra/iam_check.py: python3 -m unittest discover -s tests/iam (from the repo root)."""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

import iam_check  # noqa: E402
from iam_check import InputError, Need, Template, check, needs_of  # noqa: E402

TABLE_ARN = "arn:aws:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${UsageTable}"


def call(component: str, operation: str, resource: str, service: str = "dynamodb", items=None) -> dict:
    c = {"component": component, "service": service, "operation": operation, "resource": resource}
    if items:
        c["items"] = items
    return c


def role_template(statements_by_function: dict[str, list[dict]]) -> dict:
    """A template with the usage table, a topic and one function + role per entry."""
    resources = {
        "UsageTable": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": {"Ref": "TableName"}}},
        "AlertTopic": {"Type": "AWS::SNS::Topic"},
    }
    for function, statements in statements_by_function.items():
        resources[f"{function}Role"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {"Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": statements}}]},
        }
        resources[function] = {
            "Type": "AWS::Serverless::Function",
            "Properties": {"Role": {"Fn::GetAtt": [f"{function}Role", "Arn"]}},
        }
    return {"Parameters": {"TableName": {"Type": "String"}}, "Resources": resources}


def allow(actions, resource) -> dict:
    return {"Effect": "Allow", "Action": actions, "Resource": resource}


TABLE = {"Fn::GetAtt": ["UsageTable", "Arn"]}
MINIMAL_CALLS = [
    call("ingest", "TransactWriteItems", "t", items=["Put", "Update"]),
    call("kinesis-ingest", "TransactWriteItems", "t", items=["Put", "Update"]),
    call("budget-alerts", "GetItem", "t"),
    call("dashboard-widget", "Query", "t"),
    call("price-sync", "GetItem", "t"),
    call("price-sync", "TransactWriteItems", "t", items=["Put"]),
]


def minimal(extra_budget: list[dict] | None = None) -> dict:
    write = allow(["dynamodb:PutItem", "dynamodb:UpdateItem"], TABLE)
    return role_template(
        {
            "IngestFunction": [write],
            "KinesisIngestFunction": [write],
            "BudgetAlertsFunction": [allow("dynamodb:GetItem", TABLE)] + (extra_budget or []),
            "DashboardWidgetFunction": [allow("dynamodb:Query", TABLE)],
            "PriceSyncFunction": [allow(["dynamodb:GetItem", "dynamodb:PutItem"], TABLE)],
        }
    )


def run_check(calls, template: dict, operator=None, justifications=None):
    return check(calls, [Template("SAM", template)], operator or [], justifications or {})


class TheBudgetAlertsIndexBug(unittest.TestCase):
    """The shipped bug: an org alert's top contributors are a Query on gsi1, and the
    budget-alerts role allowed dynamodb:Query on the table ARN only."""

    CALLS = [
        call("budget-alerts", "Query", "it-org-123/index/gsi1"),
        call("budget-alerts", "Query", "it-org-123"),
    ]

    def real_sam(self) -> dict:
        return iam_check.load_template(ROOT / "infra" / "template.yaml")

    def test_the_old_policy_is_caught_denying_the_query_on_the_index(self):
        old = self.real_sam()
        # The old policy: the role as shipped, without the index statement added by the fix.
        policy = old["Resources"]["BudgetAlertsFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "TopContributorsIndex"]
        report = run_check(self.CALLS, old)
        denied = [v for v in report.violations if "is not allowed" in v]
        self.assertEqual(
            denied,
            [
                f"budget-alerts: dynamodb:Query on {TABLE_ARN}/index/gsi1 is not allowed by "
                "BudgetAlertsFunctionRole (SAM)"
            ],
        )

    def test_the_fixed_template_allows_the_query_on_the_table_and_on_the_index(self):
        report = run_check(self.CALLS, self.real_sam())
        self.assertEqual([v for v in report.violations if "is not allowed" in v], [])
        verdicts = {(r[0], r[2], r[3]): r[4] for r in report.rows}
        self.assertEqual(
            verdicts[("budget-alerts", "dynamodb:Query", "table/${UsageTable}/index/gsi1")], {"SAM": "ok"}
        )


class RecordedCallsBecomeIamNeeds(unittest.TestCase):
    def test_a_transaction_needs_each_item_action_on_the_table(self):
        needs = needs_of(call("ingest", "TransactWriteItems", "bedrock-usage", items=["Put", "Update"]))
        self.assertEqual(
            needs, [Need("dynamodb:PutItem", TABLE_ARN), Need("dynamodb:UpdateItem", TABLE_ARN)]
        )

    def test_a_query_on_an_index_needs_the_index_arn_and_a_table_arn_name_is_accepted(self):
        self.assertEqual(needs_of(call("c", "Query", "t/index/gsi1")), [Need("dynamodb:Query", TABLE_ARN + "/index/gsi1")])
        arn = "arn:aws:dynamodb:us-east-1:1:table/t"
        self.assertEqual(needs_of(call("c", "GetItem", arn)), [Need("dynamodb:GetItem", TABLE_ARN)])

    def test_s3_listing_needs_list_bucket_on_the_bucket_and_reading_get_object_on_the_key(self):
        self.assertEqual(
            needs_of(call("cli backfill", "ListObjectsV2", "logs", service="s3")),
            [Need("s3:ListBucket", "arn:aws:s3:::${LogBucket}")],
        )
        self.assertEqual(
            needs_of(call("cli backfill", "GetObject", "logs/AWSLogs/1/x.json.gz", service="s3")),
            [Need("s3:GetObject", "arn:aws:s3:::${LogBucket}/AWSLogs/1/x.json.gz")],
        )

    def test_a_transaction_without_its_items_is_bad_input(self):
        with self.assertRaises(InputError):
            needs_of(call("ingest", "TransactWriteItems", "t"))


class TemplatesResolveSymbolically(unittest.TestCase):
    def test_short_tags_sub_join_and_if_resolve_to_arns(self):
        yaml_text = """
Parameters: {TableName: {Type: String}}
Conditions: {On: !Equals [a, a]}
Resources:
  UsageTable: {Type: AWS::DynamoDB::Table}
  AlertTopic: {Type: AWS::SNS::Topic}
  Q: {Type: AWS::SQS::Queue}
  R:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyDocument:
            Statement:
              - Effect: Allow
                Action: x:Y
                Resource:
                  - !Sub "${UsageTable.Arn}/index/*"
                  - !Join ["", [!GetAtt UsageTable.Arn, /stream/*]]
                  - !If [On, !Ref AlertTopic, !Ref "AWS::NoValue"]
                  - !GetAtt Q.Arn
                  - !Sub "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:/x:*"
"""
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(yaml_text)
        t = Template("SAM", iam_check.load_template(Path(f.name)))
        Path(f.name).unlink()
        grants = iam_check.grants_of(t.role_documents("R"), t.resolve, "t")
        self.assertEqual(
            [g.resource for g in grants],
            [
                TABLE_ARN + "/index/*",
                TABLE_ARN + "/stream/*",
                "arn:aws:sns:${AWS::Region}:${AWS::AccountId}:${AlertTopic}",
                "arn:aws:sqs:${AWS::Region}:${AWS::AccountId}:${Q}",
                "arn:aws:logs:${AWS::Region}:${AWS::AccountId}:log-group:/x:*",
            ],
        )

    def test_a_policy_construct_the_check_cannot_evaluate_is_bad_input(self):
        template = minimal([{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}])
        with self.assertRaises(InputError):
            run_check(MINIMAL_CALLS, template)


class TheTwoRules(unittest.TestCase):
    def test_a_minimal_matching_policy_passes(self):
        report = run_check(MINIMAL_CALLS, minimal())
        self.assertEqual(report.violations, [])

    def test_a_missing_item_action_of_a_transaction_is_denied(self):
        template = minimal()
        template["Resources"]["IngestFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] = [
            allow("dynamodb:PutItem", TABLE)
        ]
        report = run_check(MINIMAL_CALLS, template)
        self.assertEqual(
            report.violations,
            [f"ingest: dynamodb:UpdateItem on {TABLE_ARN} is not allowed by IngestFunctionRole (SAM)"],
        )

    def test_wildcards_in_actions_and_resources_match_and_a_deny_wins(self):
        budget = [allow("dynamodb:Q*", {"Fn::Sub": "${UsageTable.Arn}/index/*"})]
        calls = MINIMAL_CALLS + [call("budget-alerts", "Query", "t/index/gsi1")]
        self.assertEqual(run_check(calls, minimal(budget)).violations, [])
        deny = {"Effect": "Deny", "Action": "dynamodb:*", "Resource": "*"}
        report = run_check(calls, minimal(budget + [deny]))
        self.assertTrue(any("dynamodb:Query" in v and "not allowed" in v for v in report.violations), report.violations)

    def test_an_unused_grant_fails_unless_justified_and_a_stale_justification_fails(self):
        template = minimal([allow("sqs:SendMessage", "arn:aws:sqs:::q")])
        report = run_check(MINIMAL_CALLS, template)
        self.assertEqual(len(report.violations), 1)
        self.assertIn("BudgetAlertsFunctionRole (SAM) grants sqs:SendMessage", report.violations[0])
        why = {"BudgetAlertsFunctionRole": {"sqs:SendMessage": "Lambda sends failed batches here."}}
        self.assertEqual(run_check(MINIMAL_CALLS, template, justifications=why).violations, [])
        stale = {"IngestFunctionRole": {"sqs:SendMessage": "Lambda sends failed events here."}}
        report = run_check(MINIMAL_CALLS, template, justifications={**why, **stale})
        self.assertEqual(
            report.violations,
            ["infra/iam-justifications.yaml: IngestFunctionRole sqs:SendMessage is granted by no checked policy: delete the entry"],
        )

    def test_harness_calls_are_ignored_and_unknown_components_and_silent_functions_fail(self):
        calls = MINIMAL_CALLS + [call("test-harness", "Scan", "t"), call("dashboard", "Query", "t")]
        report = run_check(calls, minimal())
        self.assertEqual(len(report.violations), 1)
        self.assertIn("unknown component `dashboard`", report.violations[0])
        report = run_check(MINIMAL_CALLS[:2], minimal())
        self.assertIn("no calls recorded for budget-alerts", " ".join(report.violations))

    def test_cli_calls_are_checked_against_the_operator_policy_with_its_placeholders(self):
        operator = iam_check.grants_of(
            [{"Statement": [allow("dynamodb:Query", "arn:${Partition}:dynamodb:${Region}:${Account}:table/${Table}")]}],
            iam_check.operator_resolve,
            "operator",
        )
        ok = run_check(MINIMAL_CALLS + [call("cli report", "Query", "bedrock-usage")], minimal(), operator)
        self.assertEqual(ok.violations, [])
        bad = run_check(MINIMAL_CALLS + [call("cli report", "Query", "bedrock-usage/index/gsi1")], minimal(), operator)
        self.assertEqual(
            [v for v in bad.violations if "not allowed" in v],
            [f"cli report: dynamodb:Query on {TABLE_ARN}/index/gsi1 is not allowed by operator (operator-policy.json)"],
        )
        with self.assertRaises(InputError):
            iam_check.operator_resolve("arn:aws:s3:::${Bucket}")


class TheCommandLine(unittest.TestCase):
    def test_a_missing_call_log_exits_2_saying_how_to_record_one(self):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = iam_check.main(["/nonexistent/calls.jsonl"])
        self.assertEqual(code, 2)
        self.assertIn("BEDROCK_METER_CALL_LOG", err.getvalue())

    def test_the_shipped_files_pass_with_a_log_of_the_calls_they_need_and_fail_without_one(self):
        sam = iam_check.load_template(ROOT / "infra" / "template.yaml")
        operator = iam_check.load_operator_policy(ROOT / "infra" / "operator-policy.json")
        justifications = iam_check.load_justifications(ROOT / "infra" / "iam-justifications.yaml")
        # Every operator grant and role grant that is not justified, turned into a call.
        calls = MINIMAL_CALLS + [
            call("budget-alerts", "Query", "t/index/gsi1"),
            call("budget-alerts", "Query", "t"),
            call("budget-alerts", "TransactWriteItems", "t", items=["Put", "Update"]),
            call("budget-alerts", "Publish", "arn:aws:sns:us-east-1:1:topic", service="sns"),
            call("ingest", "GetItem", "t"),
            call("kinesis-ingest", "GetItem", "t"),
            call("dashboard-widget", "Query", "t/index/gsi1"),
            call("dashboard-widget", "Query", "t"),
            call("cli prices", "GetItem", "t"),
            call("cli report", "Query", "t/index/gsi1"),
            call("cli report", "Query", "t"),
            call("cli replay", "TransactWriteItems", "t", items=["Put", "Update"]),
            call("cli budget", "DeleteItem", "t"),
            call("cli init", "CreateTable", "t"),
            call("cli init", "DescribeTable", "t"),
            call("cli init", "DescribeTimeToLive", "t"),
            call("cli init", "UpdateTimeToLive", "t"),
            call("cli backfill", "ListObjectsV2", "b", service="s3"),
            call("cli backfill", "GetObject", "b/k", service="s3"),
            *[
                call("cli redrive", op, "https://sqs.us-east-1.amazonaws.com/1/q", service="sqs")
                for op in ("ReceiveMessage", "ChangeMessageVisibility", "DeleteMessage")
            ],
            *[
                call("cli redrive", op, "arn:aws:kinesis:us-east-1:1:stream/s", service="kinesis")
                for op in ("GetShardIterator", "GetRecords")
            ],
        ]
        report = check(calls, [Template("SAM", sam)], operator, justifications)
        self.assertEqual(report.violations, [])
        without_reads = [c for c in calls if c["component"] != "cli backfill"]
        report = check(without_reads, [Template("SAM", sam)], operator, justifications)
        self.assertEqual(len(report.violations), 2, report.violations)


if __name__ == "__main__":
    unittest.main()
