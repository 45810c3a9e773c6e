// The bedrock-meter stack in CDK. It mirrors infra/template.yaml (SAM)
// resource for resource; infra/parity.py compares the two synthesized
// templates, so change both together.

import * as path from 'node:path';
import {
  Aws,
  CfnCondition,
  CfnOutput,
  CfnParameter,
  Duration,
  Fn,
  RemovalPolicy,
  Stack,
  StackProps,
  Token,
  Validations,
} from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';

/** Workspace Cargo.toml: infra/cdk/lib -> repository root. */
export const WORKSPACE_MANIFEST = path.resolve(__dirname, '..', '..', '..', 'Cargo.toml');

const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
  3288, 3653,
];

export class BedrockMeterStack extends Stack {
  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, {
      description:
        'bedrock-meter: meters Amazon Bedrock model invocation logs into exact per-user, ' +
        'per-model, per-day usage totals in DynamoDB (CDK twin of infra/template.yaml).',
      ...props,
    });

    // -------------------------------------------------------------------------
    // Parameters (same names, types and defaults as infra/template.yaml)
    // -------------------------------------------------------------------------
    const tableName = new CfnParameter(this, 'TableName', {
      type: 'String',
      default: 'bedrock-usage',
      allowedPattern: '[a-zA-Z0-9_.-]{3,255}',
      description: 'Name of the DynamoDB usage table.',
    });
    const invocationLogGroupName = new CfnParameter(this, 'InvocationLogGroupName', {
      type: 'String',
      default: '/aws/bedrock/modelinvocations',
      minLength: 1,
      maxLength: 512,
      description:
        'Existing CloudWatch Logs log group that Bedrock model invocation logging writes to ' +
        '(see docs/deploy.md). The stack subscribes the function to it.',
    });
    const deletionProtection = new CfnParameter(this, 'DeletionProtection', {
      type: 'String',
      default: 'true',
      allowedValues: ['true', 'false'],
      description: 'DynamoDB deletion protection on the usage table.',
    });
    const priceTablePath = new CfnParameter(this, 'PriceTablePath', {
      type: 'String',
      default: '',
      description:
        'Optional path, as the function sees it, of a price-table TOML file (for example ' +
        '/opt/prices.toml from a Lambda layer). Empty uses the price table built into the binary.',
    });
    const userMetadataKey = new CfnParameter(this, 'UserMetadataKey', {
      type: 'String',
      default: 'user',
      minLength: 1,
      description: 'Key of requestMetadata that names the user a call is billed to.',
    });
    const markerTtlDays = new CfnParameter(this, 'MarkerTtlDays', {
      type: 'Number',
      default: 35,
      minValue: 1,
      maxValue: 3650,
      description:
        'Days a per-record idempotency marker is kept (DynamoDB TTL). Must exceed the longest ' +
        'redelivery window (Lambda 6 h, CloudWatch Logs 24 h) plus the time a failed batch may ' +
        'wait in the on-failure queue (14 days).',
    });
    const logRetentionDays = new CfnParameter(this, 'LogRetentionDays', {
      type: 'Number',
      // A string, like the allowed values (CloudFormation compares them as text).
      default: '30',
      allowedValues: LOG_RETENTION_DAYS.map(String),
      description: "Retention of the function's own log group, in days.",
    });
    const alarmTopicArn = new CfnParameter(this, 'AlarmTopicArn', {
      type: 'String',
      default: '',
      description: 'SNS topic ARN that alarms notify. Empty sends no notification.',
    });

    const deletionProtectionOn = new CfnCondition(this, 'DeletionProtectionOn', {
      expression: Fn.conditionEquals(deletionProtection.valueAsString, 'true'),
    });
    const hasAlarmTopic = new CfnCondition(this, 'HasAlarmTopic', {
      expression: Fn.conditionNot(Fn.conditionEquals(alarmTopicArn.valueAsString, '')),
    });

    // -------------------------------------------------------------------------
    // Storage
    // -------------------------------------------------------------------------
    const table = new dynamodb.Table(this, 'UsageTable', {
      tableName: tableName.valueAsString,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: 'expires_at',
      stream: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // SSEType KMS with the AWS managed key alias/aws/dynamodb.
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      // Usage totals are billing data: keep the table on stack deletion/replacement.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    table.addGlobalSecondaryIndex({
      indexName: 'gsi1',
      partitionKey: { name: 'gsi1pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'gsi1sk', type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    // Deletion protection follows a parameter, which the L2 prop (a plain boolean) cannot take.
    (table.node.defaultChild as dynamodb.CfnTable).deletionProtectionEnabled = Fn.conditionIf(
      deletionProtectionOn.logicalId,
      true,
      false,
    );
    overrideLogicalId(table, 'UsageTable');

    // Failed asynchronous invocations (after Lambda's retries) land here and are
    // replayed with `bedrock-meter replay` (docs/deploy.md).
    const onFailureQueue = new sqs.Queue(this, 'OnFailureQueue', {
      retentionPeriod: Duration.days(14),
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    overrideLogicalId(onFailureQueue, 'OnFailureQueue');
    // enforceSSL created the queue policy (deny requests without TLS).
    overrideLogicalId(onFailureQueue.node.findChild('Policy'), 'OnFailureQueuePolicy');

    // -------------------------------------------------------------------------
    // Function
    // -------------------------------------------------------------------------
    const logGroup = new logs.LogGroup(this, 'IngestLogGroup', {
      logGroupName: Fn.sub('/aws/lambda/${AWS::StackName}-ingest'),
      removalPolicy: RemovalPolicy.DESTROY,
    });
    // Retention follows a parameter, which the L2 prop (an enum) cannot take.
    (logGroup.node.defaultChild as logs.CfnLogGroup).retentionInDays =
      logRetentionDays.valueAsNumber;
    overrideLogicalId(logGroup, 'IngestLogGroup');

    const role = new iam.Role(this, 'IngestFunctionRole', {
      description: 'bedrock-meter ingest function (least privilege)',
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      inlinePolicies: {
        ingest: new iam.PolicyDocument({
          statements: [
            // TransactWriteItems only: Put with a condition (markers) and Update
            // with ADD (aggregates); a transaction is authorised per item action.
            new iam.PolicyStatement({
              sid: 'WriteUsage',
              actions: ['dynamodb:ConditionCheckItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
              resources: [table.tableArn],
            }),
            // Lambda sends failed asynchronous events to the destination with this role.
            new iam.PolicyStatement({
              sid: 'OnFailureDestination',
              actions: ['sqs:SendMessage'],
              resources: [onFailureQueue.queueArn],
            }),
            // Its own log group only (the ARN ends in :*, covering its streams).
            new iam.PolicyStatement({
              sid: 'OwnLogGroup',
              actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
              resources: [logGroup.logGroupArn],
            }),
          ],
        }),
      },
    });
    overrideLogicalId(role, 'IngestFunctionRole');

    // The destination is bound by hand: lambda-destinations' SqsDestination would
    // also grant sqs:GetQueueAttributes and sqs:GetQueueUrl, which Lambda does not need.
    const onFailure: lambda.IDestination = {
      bind: () => ({ destination: onFailureQueue.queueArn }),
    };

    const fn = new RustFunction(this, 'IngestFunction', {
      functionName: Fn.sub('${AWS::StackName}-ingest'),
      description: 'Meters Bedrock invocation log records into DynamoDB usage totals',
      manifestPath: WORKSPACE_MANIFEST,
      binaryName: 'ingest',
      runtime: 'provided.al2023',
      architecture: lambda.Architecture.ARM_64,
      // MemorySize and Timeout come from the measurements recorded in
      // docs/performance.md; change them there first, then here and in
      // infra/template.yaml (infra/parity.py compares the two).
      memorySize: 256,
      timeout: Duration.seconds(60),
      role,
      environment: {
        USAGE_TABLE: table.tableName,
        USER_METADATA_KEY: userMetadataKey.valueAsString,
        MARKER_TTL_DAYS: Token.asString(markerTtlDays.value),
        PRICE_TABLE_PATH: priceTablePath.valueAsString,
        MAX_DECOMPRESSED_BYTES: '67108864',
        RUST_LOG: 'info',
      },
      // Keep the application level at INFO or lower: embedded-metric-format lines
      // carry no "level" key and Lambda files them as INFO.
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: lambda.ApplicationLogLevel.INFO,
      systemLogLevelV2: lambda.SystemLogLevel.WARN,
      logGroup,
      onFailure,
      retryAttempts: 2,
      maxEventAge: Duration.seconds(21600),
    });
    overrideLogicalId(fn, 'IngestFunction');
    // onFailure/retryAttempts/maxEventAge created the AWS::Lambda::EventInvokeConfig;
    // SAM names its counterpart <Function>EventInvokeConfig.
    overrideLogicalId(fn.node.findChild('EventInvokeConfig'), 'IngestFunctionEventInvokeConfig');

    // -------------------------------------------------------------------------
    // Source: the Bedrock invocation log group (L1, to match the SAM template,
    // including SourceAccount, which LambdaDestination does not set).
    // -------------------------------------------------------------------------
    const permission = new lambda.CfnPermission(this, 'InvocationLogsInvokePermission', {
      action: 'lambda:InvokeFunction',
      functionName: fn.functionArn,
      principal: 'logs.amazonaws.com',
      sourceArn: Fn.sub(
        'arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${InvocationLogGroupName}:*',
        { InvocationLogGroupName: invocationLogGroupName.valueAsString },
      ),
      sourceAccount: Aws.ACCOUNT_ID,
    });
    permission.overrideLogicalId('InvocationLogsInvokePermission');

    const subscription = new logs.CfnSubscriptionFilter(this, 'InvocationLogsSubscription', {
      filterName: Fn.sub('${AWS::StackName}-ingest'),
      logGroupName: invocationLogGroupName.valueAsString,
      filterPattern: '', // every record
      destinationArn: fn.functionArn,
    });
    subscription.overrideLogicalId('InvocationLogsSubscription');
    subscription.addResourceDependency(
      permission,
      'CloudWatch Logs checks that it may invoke the function when the filter is created',
    );

    // -------------------------------------------------------------------------
    // Alarms: each is the sum over 5 minutes, alarming above 0.
    // -------------------------------------------------------------------------
    const alarm = (
      id: string,
      description: string,
      metric: cloudwatch.IMetric,
    ): cloudwatch.Alarm => {
      const a = new cloudwatch.Alarm(this, id, {
        alarmDescription: description,
        metric,
        threshold: 0,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      const cfn = a.node.defaultChild as cloudwatch.CfnAlarm;
      const actions = Token.asList(
        Fn.conditionIf(hasAlarmTopic.logicalId, [alarmTopicArn.valueAsString], Aws.NO_VALUE),
      );
      cfn.alarmActions = actions;
      cfn.okActions = actions;
      cfn.overrideLogicalId(id);
      // CDK's built-in CloudFormation validator reads the parameter default ('')
      // inside the Fn::If without evaluating the condition.
      Validations.of(a).acknowledge({
        id: 'CloudFormation-Validate::W1030',
        reason:
          'AlarmTopicArn is referenced only in the true branch of Fn::If HasAlarmTopic, which ' +
          'holds exactly when the parameter is not empty; an empty value yields AWS::NoValue.',
      });
      return a;
    };
    const fiveMinuteSum = { statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5) };
    const meterMetric = (metricName: string) =>
      new cloudwatch.Metric({
        namespace: 'BedrockMeter',
        metricName,
        dimensionsMap: { FunctionName: fn.functionName },
        ...fiveMinuteSum,
      });

    alarm(
      'FunctionErrorsAlarm',
      'bedrock-meter ingest invocations failed (Lambda retries them, then sends them to the on-failure queue).',
      fn.metricErrors(fiveMinuteSum),
    );
    alarm(
      'OnFailureQueueAlarm',
      'bedrock-meter batches are waiting in the on-failure queue; replay them (docs/deploy.md).',
      onFailureQueue.metricApproximateNumberOfMessagesVisible(fiveMinuteSum),
    );
    alarm(
      'UnpricedAlarm',
      'bedrock-meter counted tokens it could not price (unknown model, Region or rate); update the price table.',
      meterMetric('Unpriced'),
    );
    alarm(
      'SkippedAlarm',
      "bedrock-meter skipped log records it could not parse; see the function's warnings.",
      meterMetric('Skipped'),
    );

    // -------------------------------------------------------------------------
    // Outputs (same logical ids as the SAM template)
    // -------------------------------------------------------------------------
    const output = (id: string, value: string, description: string) =>
      new CfnOutput(this, `${id}Output`, { value, description }).overrideLogicalId(id);
    output('TableName', table.tableName, 'DynamoDB usage table name');
    output('TableArn', table.tableArn, 'DynamoDB usage table ARN');
    output(
      'TableStreamArn',
      table.tableStreamArn!,
      'DynamoDB stream (NEW_AND_OLD_IMAGES) of the usage table',
    );
    output('FunctionArn', fn.functionArn, 'Ingest function ARN');
    output(
      'OnFailureQueueUrl',
      onFailureQueue.queueUrl,
      'SQS queue holding failed batches for `bedrock-meter replay`',
    );

    // -------------------------------------------------------------------------
    // cdk-nag acknowledgements: every entry says why the finding does not apply.
    // -------------------------------------------------------------------------
    Validations.of(onFailureQueue).acknowledge(
      {
        id: 'AwsSolutions-SQS3',
        reason:
          'This queue is itself the terminal on-failure destination of the asynchronous ' +
          'invocations (a dead-letter queue in all but name); its messages are replayed by an ' +
          'operator with `bedrock-meter replay`, so a further DLQ behind it would add nothing.',
      },
    );
  }
}

/** Give an L2 construct's CloudFormation resource the same logical id as in the SAM template. */
function overrideLogicalId(construct: Construct, logicalId: string): void {
  const child = construct.node.defaultChild;
  if (!(child instanceof Object) || !('overrideLogicalId' in child)) {
    throw new Error(`${construct.node.path} has no CloudFormation resource to rename`);
  }
  (child as { overrideLogicalId(id: string): void }).overrideLogicalId(logicalId);
}
