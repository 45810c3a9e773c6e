// The bedrock-meter stack in CDK. It mirrors infra/template.yaml (SAM)
// resource for resource; infra/parity.py compares the two synthesized
// templates, so change both together.

import * as path from 'node:path';
import {
  Aws,
  CfnCondition,
  CfnResource,
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
import * as events from 'aws-cdk-lib/aws-events';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
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
        'bedrock-meter: meters Amazon Bedrock model invocation logs (directly, or with ' +
        'HighVolume through a Kinesis stream) into exact per-user, per-model, per-day usage ' +
        "totals in DynamoDB, and publishes budget alerts from the table's stream (CDK twin of " +
        'infra/template.yaml).',
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
        '/opt/prices.toml from a Lambda layer). Empty uses the price table built into the binary. ' +
        'When set, it takes precedence over the price table the price-sync function stores in the usage table.',
    });
    const priceSyncRegions = new CfnParameter(this, 'PriceSyncRegions', {
      type: 'String',
      default: '',
      allowedPattern: '^[a-z0-9,-]*$',
      description:
        'Comma-separated Regions whose Bedrock prices the daily price-sync function downloads from ' +
        'the public AWS Price List (for example us-east-1,eu-west-1; list every Region a central ' +
        "stack collects from). Empty: the stack's own Region.",
    });
    const userMetadataKey = new CfnParameter(this, 'UserMetadataKey', {
      type: 'String',
      default: 'user',
      minLength: 1,
      description: 'Key of requestMetadata that names the user a call is billed to.',
    });
    const attributionTags = new CfnParameter(this, 'AttributionTags', {
      type: 'String',
      default: '',
      maxLength: 1100,
      description:
        'Comma-separated requestMetadata keys (for example team,feature; or principal for the ' +
        "caller's IAM principal) each invocation is also counted under, as tag_model_day and " +
        'tag_month aggregates. Empty counts users and models only. Each key adds about two write ' +
        'units per record group (docs/performance.md).',
    });
    const requestCosts = new CfnParameter(this, 'RequestCosts', {
      type: 'String',
      default: 'off',
      allowedValues: ['off', 'on'],
      description:
        'on: keep one item per counted request (its user, model, day, counts and cost, for ' +
        'MarkerTtlDays) so that `bedrock-meter cost` can answer what one request id cost; one ' +
        'more write unit per record. off: per-day totals only.',
    });
    const markerTtlDays = new CfnParameter(this, 'MarkerTtlDays', {
      type: 'Number',
      default: 35,
      minValue: 1,
      maxValue: 3650,
      description:
        'Days an idempotency marker (and a request-cost item) is kept (DynamoDB TTL). Must exceed the longest ' +
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

    const highVolume = new CfnParameter(this, 'HighVolume', {
      type: 'String',
      default: 'false',
      allowedValues: ['true', 'false'],
      description:
        'true: the invocation log group is subscribed to a Kinesis data stream read by the ' +
        'kinesis-ingest function (scales with shards). false: the log group is subscribed ' +
        'directly to the ingest function (asynchronous invocations).',
    });
    const shardCount = new CfnParameter(this, 'ShardCount', {
      type: 'Number',
      default: 2,
      minValue: 1,
      maxValue: 500,
      description: 'Shards of the Kinesis stream (HighVolume true only).',
    });
    const parallelizationFactor = new CfnParameter(this, 'ParallelizationFactor', {
      type: 'Number',
      default: 1,
      minValue: 1,
      maxValue: 10,
      description:
        'Concurrent kinesis-ingest batches per shard (HighVolume true only). Records with the ' +
        'same partition key stay in order either way.',
    });
    const kinesisBatchingWindowSeconds = new CfnParameter(this, 'KinesisBatchingWindowSeconds', {
      type: 'Number',
      default: 60,
      minValue: 0,
      maxValue: 300,
      description:
        'Seconds Lambda gathers Kinesis records before invoking kinesis-ingest (HighVolume true ' +
        'only; up to 1,000 records or 6 MB). Each invocation is one commit, so a longer window ' +
        'means fewer DynamoDB writes per log event and that much more delay before totals show ' +
        'it (docs/scale.md).',
    });
    const sourceAccountIds = new CfnParameter(this, 'SourceAccountIds', {
      type: 'CommaDelimitedList',
      default: '',
      description:
        'Other AWS account ids whose Bedrock invocation logs this stack collects (HighVolume ' +
        'true only): the stack then creates a CloudWatch Logs destination backed by the stream ' +
        'that these accounts may subscribe their log groups to (infra/source-account.yaml; ' +
        'docs/deploy.md, "Several accounts and Regions"). Empty creates no destination.',
    });

    // The instruction set is chosen at synth time with the context value
    // `architecture` (`cdk deploy -c architecture=x86_64`; default arm64), because
    // cargo-lambda-cdk compiles the asset for it. The template still carries the
    // parameter `Architecture` that infra/template.yaml has, but it allows only the
    // value the asset was built for, so a deploy-time override cannot mismatch it.
    const arch = architectureFromContext(this.node.tryGetContext('architecture'));
    const architecture = new CfnParameter(this, 'Architecture', {
      type: 'String',
      default: arch.name,
      allowedValues: [arch.name],
      description:
        'Instruction set of the functions, fixed when the app is synthesized (context ' +
        '`architecture`, arm64 or x86_64): the assets are compiled for it. Change it with ' +
        '`cdk deploy -c architecture=x86_64`, not here.',
    });

    const deletionProtectionOn = new CfnCondition(this, 'DeletionProtectionOn', {
      expression: Fn.conditionEquals(deletionProtection.valueAsString, 'true'),
    });
    const hasAlarmTopic = new CfnCondition(this, 'HasAlarmTopic', {
      expression: Fn.conditionNot(Fn.conditionEquals(alarmTopicArn.valueAsString, '')),
    });
    const highVolumeOn = new CfnCondition(this, 'HighVolumeOn', {
      expression: Fn.conditionEquals(highVolume.valueAsString, 'true'),
    });
    const directSubscription = new CfnCondition(this, 'DirectSubscription', {
      expression: Fn.conditionNot(highVolumeOn),
    });
    const hasSourceAccounts = new CfnCondition(this, 'HasSourceAccounts', {
      expression: Fn.conditionNot(
        Fn.conditionEquals(Fn.join('', sourceAccountIds.valueAsList), ''),
      ),
    });
    const centralDestinationOn = new CfnCondition(this, 'CentralDestinationOn', {
      expression: Fn.conditionAnd(highVolumeOn, hasSourceAccounts),
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
            // TransactWriteItems: Put with a condition (per-record markers) and
            // Update with ADD (aggregates) or a condition (marker buckets); a
            // transaction is authorised per item action (no ConditionCheck item is
            // ever sent; infra/iam_check.py checks). The conditional PutItem of the
            // marker switch-over item (MARKERS), once per table, is a PutItem too.
            new iam.PolicyStatement({
              sid: 'WriteUsage',
              actions: ['dynamodb:PutItem', 'dynamodb:UpdateItem'],
              resources: [table.tableArn],
            }),
            // GetItem on three partitions only: the newest stored price table (the
            // pointer at start and at most every 10 minutes, a version when it
            // changed), the marker switch-over item (MARKERS, once at start), and a
            // marker bucket (B#...) once this process filled it or when a cancelled
            // transaction's reason carries no item.
            new iam.PolicyStatement({
              sid: 'ReadPricesAndMarkerState',
              actions: ['dynamodb:GetItem'],
              resources: [table.tableArn],
              conditions: {
                'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['PRICES', 'MARKERS', 'B#*'] },
              },
            }),
            // RequestCosts on: one request-cost item (Q#...) per counted record, 25
            // to a BatchWriteItem, before the commit.
            new iam.PolicyStatement({
              sid: 'WriteRequestCosts',
              actions: ['dynamodb:BatchWriteItem'],
              resources: [table.tableArn],
              conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['Q#*'] } },
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
      architecture: arch,
      // MemorySize and Timeout come from the measurements recorded in
      // docs/performance.md; change them there first, then here and in
      // infra/template.yaml (infra/parity.py compares the two).
      memorySize: 256,
      timeout: Duration.seconds(60),
      role,
      environment: {
        USAGE_TABLE: table.tableName,
        USER_METADATA_KEY: userMetadataKey.valueAsString,
        ATTRIBUTION_TAGS: attributionTags.valueAsString,
        MARKER_TTL_DAYS: Token.asString(markerTtlDays.value),
        REQUEST_COSTS: requestCosts.valueAsString,
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
    useArchitectureParameter(fn, architecture);
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
    // HighVolume false only: CloudWatch Logs invokes the ingest function directly.
    permission.cfnOptions.condition = directSubscription;

    const subscription = new logs.CfnSubscriptionFilter(this, 'InvocationLogsSubscription', {
      filterName: Fn.sub('${AWS::StackName}-ingest'),
      logGroupName: invocationLogGroupName.valueAsString,
      filterPattern: '', // every record
      destinationArn: fn.functionArn,
    });
    subscription.overrideLogicalId('InvocationLogsSubscription');
    subscription.cfnOptions.condition = directSubscription;
    subscription.addResourceDependency(
      permission,
      'CloudWatch Logs checks that it may invoke the function when the filter is created',
    );

    // -------------------------------------------------------------------------
    // Shared by the functions below: same runtime, architecture and logging as
    // ingest; one log group and one role each.
    // -------------------------------------------------------------------------
    const functionLogGroup = (id: string, suffix: string): logs.LogGroup => {
      const group = new logs.LogGroup(this, id, {
        logGroupName: Fn.sub(`/aws/lambda/\${AWS::StackName}-${suffix}`),
        removalPolicy: RemovalPolicy.DESTROY,
      });
      (group.node.defaultChild as logs.CfnLogGroup).retentionInDays =
        logRetentionDays.valueAsNumber;
      overrideLogicalId(group, id);
      return group;
    };
    const lambdaRole = (
      id: string,
      description: string,
      policyName: string,
      statements: iam.PolicyStatement[],
    ): iam.Role => {
      const r = new iam.Role(this, id, {
        description,
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        inlinePolicies: { [policyName]: new iam.PolicyDocument({ statements }) },
      });
      overrideLogicalId(r, id);
      return r;
    };
    const rustFunction = (
      id: string,
      binaryName: string,
      description: string,
      functionRole: iam.IRole,
      functionLogs: logs.ILogGroup,
      environment: Record<string, string>,
    ): RustFunction => {
      const f = new RustFunction(this, id, {
        functionName: Fn.sub(`\${AWS::StackName}-${binaryName}`),
        description,
        manifestPath: WORKSPACE_MANIFEST,
        binaryName,
        runtime: 'provided.al2023',
        architecture: arch,
        memorySize: 256,
        timeout: Duration.seconds(60),
        role: functionRole,
        environment,
        loggingFormat: lambda.LoggingFormat.JSON,
        applicationLogLevelV2: lambda.ApplicationLogLevel.INFO,
        systemLogLevelV2: lambda.SystemLogLevel.WARN,
        logGroup: functionLogs,
      });
      overrideLogicalId(f, id);
      useArchitectureParameter(f, architecture);
      return f;
    };
    /** A queue for a stream mapping's failed-batch records: SSE-SQS, 14 days, TLS only. */
    const failureQueue = (id: string): sqs.Queue => {
      const q = new sqs.Queue(this, id, {
        retentionPeriod: Duration.days(14),
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
      });
      overrideLogicalId(q, id);
      overrideLogicalId(q.node.findChild('Policy'), `${id}Policy`);
      Validations.of(q).acknowledge({
        id: 'AwsSolutions-SQS3',
        reason:
          'This queue is itself the on-failure destination of a stream event source mapping ' +
          '(a dead-letter queue in all but name): it holds the failed batch coordinates for an ' +
          'operator, so a further DLQ behind it would add nothing.',
      });
      return q;
    };
    /** Put a construct's resources (all of them, e.g. a queue and its policy) under a condition. */
    const onlyIf = (construct: Construct, condition: CfnCondition): void => {
      for (const child of construct.node.findAll()) {
        if (child instanceof CfnResource) child.cfnOptions.condition = condition;
      }
    };

    // -------------------------------------------------------------------------
    // High volume (HighVolume true): the log group feeds a Kinesis data stream
    // that kinesis-ingest reads; optionally a CloudWatch Logs destination lets
    // other accounts subscribe their log groups to the same stream.
    // -------------------------------------------------------------------------
    const stream = new kinesis.CfnStream(this, 'InvocationLogStream', {
      streamModeDetails: { streamMode: 'PROVISIONED' },
      shardCount: shardCount.valueAsNumber,
      // CloudWatch Logs retries a failed delivery for 24 hours; a batch that
      // kinesis-ingest cannot process goes to its failure queue (14 days).
      retentionPeriodHours: 24,
      streamEncryption: { encryptionType: 'KMS', keyId: 'alias/aws/kinesis' },
    });
    stream.overrideLogicalId('InvocationLogStream');
    stream.cfnOptions.condition = highVolumeOn;

    // CloudWatch Logs acting for this account or for SourceAccountIds (any
    // Region: a destination in another Region may target this stream).
    const logsToKinesisRole = new iam.Role(this, 'LogsToKinesisRole', {
      description: 'CloudWatch Logs puts Bedrock invocation log events into the bedrock-meter stream',
      assumedBy: new iam.ServicePrincipal('logs.amazonaws.com', {
        conditions: {
          StringLike: {
            'aws:SourceArn': Fn.conditionIf(
              centralDestinationOn.logicalId,
              Fn.split(
                ',',
                Fn.sub('arn:*:logs:*:${AWS::AccountId}:*,arn:*:logs:*:${Accounts}:*', {
                  Accounts: Fn.join(':*,arn:*:logs:*:', sourceAccountIds.valueAsList),
                }),
              ),
              [Fn.sub('arn:*:logs:*:${AWS::AccountId}:*')],
            ),
          },
        },
      }),
      inlinePolicies: {
        'put-records': new iam.PolicyDocument({
          statements: [
            new iam.PolicyStatement({
              sid: 'PutRecords',
              actions: ['kinesis:PutRecord', 'kinesis:PutRecords'],
              resources: [stream.attrArn],
            }),
          ],
        }),
      },
    });
    overrideLogicalId(logsToKinesisRole, 'LogsToKinesisRole');
    onlyIf(logsToKinesisRole, highVolumeOn);

    const kinesisSubscription = new logs.CfnSubscriptionFilter(
      this,
      'InvocationLogsKinesisSubscription',
      {
        // Another name than the direct filter's, so that switching HighVolume
        // never clashes (a log group allows two filters: keep a slot free).
        filterName: Fn.sub('${AWS::StackName}-kinesis'),
        logGroupName: invocationLogGroupName.valueAsString,
        filterPattern: '', // every record
        destinationArn: stream.attrArn,
        roleArn: logsToKinesisRole.roleArn,
        // Bedrock writes every record into one log stream: ByLogStream (the
        // default) would put them all on one shard.
        distribution: 'Random',
      },
    );
    kinesisSubscription.overrideLogicalId('InvocationLogsKinesisSubscription');
    kinesisSubscription.cfnOptions.condition = highVolumeOn;

    // SourceAccountIds subscribe their log groups in this Region to this
    // destination; infra/region-destination.yaml makes one in other Regions.
    const destination = new logs.CfnDestination(this, 'CentralLogDestination', {
      destinationName: Fn.sub('${AWS::StackName}-invocation-logs'),
      targetArn: stream.attrArn,
      roleArn: logsToKinesisRole.roleArn,
      destinationPolicy: Fn.sub(
        '{"Version":"2012-10-17","Statement":[{"Sid":"SourceAccounts","Effect":"Allow","Principal":{"AWS":["${Accounts}"]},"Action":"logs:PutSubscriptionFilter","Resource":"arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:destination:${AWS::StackName}-invocation-logs"}]}',
        { Accounts: Fn.join('","', sourceAccountIds.valueAsList) },
      ),
    });
    destination.overrideLogicalId('CentralLogDestination');
    destination.cfnOptions.condition = centralDestinationOn;

    const kinesisFailureQueue = failureQueue('KinesisIngestFailureQueue');
    onlyIf(kinesisFailureQueue, highVolumeOn);
    const kinesisLogGroup = functionLogGroup('KinesisIngestLogGroup', 'kinesis-ingest');
    onlyIf(kinesisLogGroup, highVolumeOn);
    const kinesisRole = lambdaRole(
      'KinesisIngestFunctionRole',
      'bedrock-meter kinesis-ingest function (least privilege)',
      'kinesis-ingest',
      [
        // The same exactly-once commit as ingest (TransactWriteItems), and the
        // same conditional PutItem of the switch-over item.
        new iam.PolicyStatement({
          sid: 'WriteUsage',
          actions: ['dynamodb:PutItem', 'dynamodb:UpdateItem'],
          resources: [table.tableArn],
        }),
        // The same reads as ingest: prices, the marker switch-over item, a marker
        // bucket this process filled or a cancelled transaction returned no item for.
        new iam.PolicyStatement({
          sid: 'ReadPricesAndMarkerState',
          actions: ['dynamodb:GetItem'],
          resources: [table.tableArn],
          conditions: {
            'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['PRICES', 'MARKERS', 'B#*'] },
          },
        }),
        // RequestCosts on: the request-cost items, as ingest writes them.
        new iam.PolicyStatement({
          sid: 'WriteRequestCosts',
          actions: ['dynamodb:BatchWriteItem'],
          resources: [table.tableArn],
          conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['Q#*'] } },
        }),
        // What the event source mapping calls to read the stream (AWS managed
        // key: no KMS grant needed). ListStreams is account-level; granted on the stream only.
        new iam.PolicyStatement({
          sid: 'ReadStream',
          actions: [
            'kinesis:DescribeStream',
            'kinesis:DescribeStreamSummary',
            'kinesis:GetRecords',
            'kinesis:GetShardIterator',
            'kinesis:ListShards',
            'kinesis:ListStreams',
            'kinesis:SubscribeToShard',
          ],
          resources: [stream.attrArn],
        }),
        new iam.PolicyStatement({
          sid: 'OnFailureDestination',
          actions: ['sqs:SendMessage'],
          resources: [kinesisFailureQueue.queueArn],
        }),
        new iam.PolicyStatement({
          sid: 'OwnLogGroup',
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [kinesisLogGroup.logGroupArn],
        }),
      ],
    );
    onlyIf(kinesisRole, highVolumeOn);
    const kinesisFn = rustFunction(
      'KinesisIngestFunction',
      'kinesis-ingest',
      'Meters Bedrock invocation log records from the Kinesis stream into DynamoDB usage totals',
      kinesisRole,
      kinesisLogGroup,
      {
        USAGE_TABLE: table.tableName,
        USER_METADATA_KEY: userMetadataKey.valueAsString,
        ATTRIBUTION_TAGS: attributionTags.valueAsString,
        MARKER_TTL_DAYS: Token.asString(markerTtlDays.value),
        REQUEST_COSTS: requestCosts.valueAsString,
        PRICE_TABLE_PATH: priceTablePath.valueAsString,
        MAX_DECOMPRESSED_BYTES: '67108864',
        RUST_LOG: 'info',
      },
    );
    onlyIf(kinesisFn, highVolumeOn);
    // An invocation is a whole batch, one commit (up to 1,000 Kinesis records or
    // 6 MB, about 100,000 log events): about 4 s of CPU at 256 MB estimated, plus
    // a few dozen sequential transactions; 120 s keeps a wide margin over that
    // estimate (reasoning in infra/template.yaml).
    (kinesisFn.node.defaultChild as lambda.CfnFunction).timeout = 120;

    const kinesisMapping = new lambda.CfnEventSourceMapping(this, 'KinesisIngestStreamMapping', {
      functionName: kinesisFn.functionName,
      eventSourceArn: stream.attrArn,
      // From the oldest record kept: nothing delivered before the mapping existed is lost.
      startingPosition: 'TRIM_HORIZON',
      // A whole Lambda batch is one commit: the larger the batch (up to 1,000
      // records, 6 MB or the window), the fewer DynamoDB writes per log event.
      batchSize: 1000,
      maximumBatchingWindowInSeconds: kinesisBatchingWindowSeconds.valueAsNumber,
      parallelizationFactor: parallelizationFactor.valueAsNumber,
      functionResponseTypes: ['ReportBatchItemFailures'],
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: 10,
      destinationConfig: { onFailure: { destination: kinesisFailureQueue.queueArn } },
    });
    kinesisMapping.overrideLogicalId('KinesisIngestStreamMapping');
    kinesisMapping.cfnOptions.condition = highVolumeOn;

    // -------------------------------------------------------------------------
    // Budget alerts: a function on the usage table's stream publishes one SNS
    // notification per budget threshold crossed (docs/data-model.md).
    // -------------------------------------------------------------------------
    const budgetFailureQueue = failureQueue('BudgetAlertsFailureQueue');
    const budgetLogGroup = functionLogGroup('BudgetAlertsLogGroup', 'budget-alerts');
    const budgetRole = lambdaRole(
      'BudgetAlertsFunctionRole',
      'bedrock-meter budget-alerts function (least privilege)',
      'budget-alerts',
      [
        // Budgets and the models behind a spend are read (GetItem, Query); alert
        // markers are claimed and marked sent with conditional UpdateItem; the
        // organisation's month total and its delta markers are one
        // TransactWriteItems of Put and Update (docs/budgets.md).
        new iam.PolicyStatement({
          sid: 'BudgetsAndAlertMarkers',
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query', 'dynamodb:UpdateItem'],
          resources: [table.tableArn],
        }),
        // An organisation alert names its top contributors: a Query on gsi1. IAM
        // evaluates a Query on an index against the index's ARN, not the table's.
        new iam.PolicyStatement({
          sid: 'TopContributorsIndex',
          actions: ['dynamodb:Query'],
          resources: [`${table.tableArn}/index/gsi1`],
        }),
        new iam.PolicyStatement({
          sid: 'ReadTableStream',
          actions: [
            'dynamodb:DescribeStream',
            'dynamodb:GetRecords',
            'dynamodb:GetShardIterator',
            'dynamodb:ListStreams',
          ],
          resources: [table.tableStreamArn!],
        }),
        new iam.PolicyStatement({
          sid: 'OnFailureDestination',
          actions: ['sqs:SendMessage'],
          resources: [budgetFailureQueue.queueArn],
        }),
        new iam.PolicyStatement({
          sid: 'OwnLogGroup',
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [budgetLogGroup.logGroupArn],
        }),
      ],
    );

    // L1, to state the whole key policy: account administration, SNS for this
    // account, and the function only through SNS.
    const alertKey = new kms.CfnKey(this, 'AlertKey', {
      description: 'bedrock-meter budget alert topic',
      enableKeyRotation: true,
      keyPolicy: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'AccountAdministration',
            Effect: 'Allow',
            Principal: { AWS: Fn.sub('arn:${AWS::Partition}:iam::${AWS::AccountId}:root') },
            Action: 'kms:*',
            Resource: '*',
          },
          {
            Sid: 'SnsForThisAccount',
            Effect: 'Allow',
            Principal: { Service: 'sns.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
            Resource: '*',
            Condition: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
          },
          {
            Sid: 'BudgetAlertsPublisher',
            Effect: 'Allow',
            Principal: { AWS: budgetRole.roleArn },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
            Resource: '*',
            Condition: {
              StringEquals: { 'kms:ViaService': Fn.sub('sns.${AWS::Region}.amazonaws.com') },
            },
          },
        ],
      },
    });
    alertKey.overrideLogicalId('AlertKey');

    const topic = new sns.CfnTopic(this, 'AlertTopic', {
      topicName: Fn.sub('${AWS::StackName}-budget-alerts'),
      displayName: 'bedrock-meter budget alerts',
      kmsMasterKeyId: alertKey.attrArn,
    });
    topic.overrideLogicalId('AlertTopic');
    const topicPolicy = new sns.CfnTopicPolicy(this, 'AlertTopicPolicy', {
      topics: [topic.ref],
      policyDocument: {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'DenyInsecureTransport',
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 'sns:Publish',
            Resource: topic.ref,
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          },
        ],
      },
    });
    topicPolicy.overrideLogicalId('AlertTopicPolicy');

    // A policy of its own: the key's policy names the role, so the role itself
    // cannot refer to the key (or to the topic encrypted with it) without a cycle.
    const publishPolicy = new iam.Policy(this, 'BudgetAlertsPublishPolicy', {
      policyName: 'publish-alerts',
      roles: [budgetRole],
      statements: [
        new iam.PolicyStatement({
          sid: 'PublishAlerts',
          actions: ['sns:Publish'],
          resources: [topic.ref],
        }),
        // Publishing to a topic encrypted with a customer managed key.
        new iam.PolicyStatement({
          sid: 'EncryptAlerts',
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          resources: [alertKey.attrArn],
        }),
      ],
    });
    overrideLogicalId(publishPolicy, 'BudgetAlertsPublishPolicy');
    Validations.of(publishPolicy).acknowledge({
      id: 'AwsSolutions::AwsSolutions-IAM5[Action::kms:GenerateDataKey*]',
      reason:
        'A publisher to an SNS topic encrypted with a customer managed key needs ' +
        'kms:GenerateDataKey* and kms:Decrypt (Amazon SNS developer guide, "Key management"). ' +
        'The wildcard only covers the GenerateDataKey variants, on this one key, and the key ' +
        'policy further limits the role to calls made through SNS (kms:ViaService).',
    });

    const budgetFn = rustFunction(
      'BudgetAlertsFunction',
      'budget-alerts',
      'Publishes one SNS notification per budget threshold crossed in the usage table',
      budgetRole,
      budgetLogGroup,
      {
        USAGE_TABLE: table.tableName,
        ALERT_TOPIC_ARN: topic.ref,
        ATTRIBUTION_TAGS: attributionTags.valueAsString,
        RUST_LOG: 'info',
      },
    );

    const budgetMapping = new lambda.CfnEventSourceMapping(this, 'BudgetAlertsStreamMapping', {
      functionName: budgetFn.functionName,
      eventSourceArn: table.tableStreamArn!,
      startingPosition: 'LATEST',
      batchSize: 100,
      maximumBatchingWindowInSeconds: 1,
      functionResponseTypes: ['ReportBatchItemFailures'],
      bisectBatchOnFunctionError: true,
      maximumRetryAttempts: 5,
      destinationConfig: { onFailure: { destination: budgetFailureQueue.queueArn } },
      // Only changes of the aggregates budgets apply to; markers, model totals,
      // budgets, alert markers and TTL deletions (no NewImage) never invoke it.
      filterCriteria: {
        filters: [{ pattern: '{"dynamodb":{"NewImage":{"kind":{"S":["user_day","user_month","tag_month","tag_model_day"]}}}}' }],
      },
    });
    budgetMapping.overrideLogicalId('BudgetAlertsStreamMapping');
    budgetMapping.addResourceDependency(
      publishPolicy.node.defaultChild as CfnResource,
      'the function must be able to publish before the first batch arrives',
    );

    // -------------------------------------------------------------------------
    // Prices: a daily function downloads the Bedrock offers of the public AWS
    // Price List (no credentials), syncs them onto the newest stored price table
    // and stores the result in the usage table (partition PRICES) when it is
    // valid and changed; the ingest functions pick it up within 10 minutes.
    // -------------------------------------------------------------------------
    const priceSyncLogGroup = functionLogGroup('PriceSyncLogGroup', 'price-sync');
    const priceSyncRole = lambdaRole(
      'PriceSyncFunctionRole',
      'bedrock-meter price-sync function (least privilege)',
      'price-sync',
      [
        // Only the PRICES partition: read the pointer and the newest table, write
        // a new version and the pointer (TransactWriteItems of two Puts). The
        // Price List is public: no pricing:* action.
        new iam.PolicyStatement({
          sid: 'StorePriceTables',
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem'],
          resources: [table.tableArn],
          conditions: { 'ForAllValues:StringEquals': { 'dynamodb:LeadingKeys': ['PRICES'] } },
        }),
        new iam.PolicyStatement({
          sid: 'OwnLogGroup',
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [priceSyncLogGroup.logGroupArn],
        }),
      ],
    );
    const priceSyncFn = rustFunction(
      'PriceSyncFunction',
      'price-sync',
      'Stores a validated price table synced from the AWS Price List in the usage table',
      priceSyncRole,
      priceSyncLogGroup,
      {
        USAGE_TABLE: table.tableName,
        PRICE_SYNC_REGIONS: priceSyncRegions.valueAsString,
        RUST_LOG: 'info',
      },
    );
    // Three offer files per Region, parsed in memory; once a day.
    const priceSyncCfn = priceSyncFn.node.defaultChild as lambda.CfnFunction;
    priceSyncCfn.memorySize = 512;
    priceSyncCfn.timeout = 300;
    // Daily, at an odd minute (the Price List publishes through the day). L1, to
    // match the SAM template's logical ids.
    const priceSyncSchedule = new events.CfnRule(this, 'PriceSyncSchedule', {
      description: 'bedrock-meter daily price sync',
      scheduleExpression: 'cron(17 5 * * ? *)',
      state: 'ENABLED',
      targets: [{ id: 'price-sync', arn: priceSyncFn.functionArn }],
    });
    priceSyncSchedule.overrideLogicalId('PriceSyncSchedule');
    new lambda.CfnPermission(this, 'PriceSyncSchedulePermission', {
      action: 'lambda:InvokeFunction',
      functionName: priceSyncFn.functionArn,
      principal: 'events.amazonaws.com',
      sourceArn: priceSyncSchedule.attrArn,
    }).overrideLogicalId('PriceSyncSchedulePermission');

    // -------------------------------------------------------------------------
    // Alarms: each is the sum over 5 minutes, alarming above 0.
    // -------------------------------------------------------------------------
    const alarm = (
      id: string,
      description: string,
      metric: cloudwatch.IMetric,
      opts: { threshold?: number; condition?: CfnCondition; periods?: number } = {},
    ): cloudwatch.Alarm => {
      const a = new cloudwatch.Alarm(this, id, {
        alarmDescription: description,
        metric,
        threshold: opts.threshold ?? 0,
        evaluationPeriods: opts.periods ?? 1,
        // "Persists": every one of the periods, not some of them.
        ...(opts.periods ? { datapointsToAlarm: opts.periods } : {}),
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
      if (opts.condition) cfn.cfnOptions.condition = opts.condition;
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
    const meterMetric = (metricName: string, f: lambda.IFunction = fn) =>
      new cloudwatch.Metric({
        namespace: 'BedrockMeter',
        metricName,
        dimensionsMap: { FunctionName: f.functionName },
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
    // Unpriced invocations that persist: in each quarter of an hour.
    const unpricedHour = (f: lambda.IFunction) =>
      new cloudwatch.Metric({
        namespace: 'BedrockMeter',
        metricName: 'Unpriced',
        dimensionsMap: { FunctionName: f.functionName },
        statistic: cloudwatch.Stats.SUM,
        period: Duration.minutes(15),
      });
    alarm(
      'UnpricedAlarm',
      'bedrock-meter counted tokens it could not price in every quarter of the last hour (unknown model, Region or rate; UnpricedByReason says which); update the price table (docs/prices.md).',
      unpricedHour(fn),
      { periods: 4 },
    );
    alarm(
      'SkippedAlarm',
      "bedrock-meter skipped log records it could not parse; see the function's warnings.",
      meterMetric('Skipped'),
    );
    alarm(
      'BudgetAlertsErrorsAlarm',
      'bedrock-meter budget-alerts invocations failed (the stream batch is retried, bisected, then recorded in its failure queue).',
      budgetFn.metricErrors(fiveMinuteSum),
    );
    alarm(
      'BudgetAlertsFailureQueueAlarm',
      'bedrock-meter budget-alerts gave up on stream batches; budget notifications may be missing (docs/deploy.md).',
      budgetFailureQueue.metricApproximateNumberOfMessagesVisible(fiveMinuteSum),
    );
    const highVolumeOnly = { condition: highVolumeOn };
    alarm(
      'KinesisIngestErrorsAlarm',
      'bedrock-meter kinesis-ingest invocations failed (the batch is retried, bisected, then recorded in its failure queue).',
      kinesisFn.metricErrors(fiveMinuteSum),
      highVolumeOnly,
    );
    alarm(
      'KinesisIngestFailureQueueAlarm',
      'bedrock-meter kinesis-ingest gave up on stream batches; replay them from the stream within 24 hours (docs/deploy.md).',
      kinesisFailureQueue.metricApproximateNumberOfMessagesVisible(fiveMinuteSum),
      highVolumeOnly,
    );
    alarm(
      'KinesisIngestUnpricedAlarm',
      'bedrock-meter (kinesis-ingest) counted tokens it could not price in every quarter of the last hour (unknown model, Region or rate; UnpricedByReason says which); update the price table (docs/prices.md).',
      unpricedHour(kinesisFn),
      { periods: 4, condition: highVolumeOn },
    );
    alarm(
      'KinesisIngestSkippedAlarm',
      "bedrock-meter (kinesis-ingest) skipped log records it could not parse; see the function's warnings.",
      meterMetric('Skipped', kinesisFn),
      highVolumeOnly,
    );
    // The one alarm that is not "above 0": the oldest record's age, maximum over
    // 5 minutes, above 15 minutes (the stream keeps 24 hours).
    alarm(
      'KinesisIngestIteratorAgeAlarm',
      'bedrock-meter kinesis-ingest is falling behind the stream; add shards or raise ParallelizationFactor.',
      kinesisFn.metric('IteratorAge', { statistic: cloudwatch.Stats.MAXIMUM, period: Duration.minutes(5) }),
      { threshold: 900000, condition: highVolumeOn },
    );

    // Prices: the table's age (days since `checked`, maximum over an hour) and
    // stored tables that could not be used; the daily sync's failures.
    const hourly = (metricName: string, f: lambda.IFunction, statistic: string) =>
      new cloudwatch.Metric({
        namespace: 'BedrockMeter',
        metricName,
        dimensionsMap: { FunctionName: f.functionName },
        statistic,
        period: Duration.hours(1),
      });
    const ageText =
      "uses a price table checked more than 8 days ago; see the price-sync function's errors, or update the table (docs/prices.md).";
    const failText =
      'could not use the stored price table (unreadable or invalid) and uses the next in precedence (docs/prices.md).';
    alarm(
      'PriceTableAgeAlarm',
      `bedrock-meter (ingest) ${ageText}`,
      hourly('PriceTableAgeDays', fn, cloudwatch.Stats.MAXIMUM),
      { threshold: 8 },
    );
    alarm(
      'PriceTableLoadFailuresAlarm',
      `bedrock-meter (ingest) ${failText}`,
      hourly('PriceTableLoadFailures', fn, cloudwatch.Stats.SUM),
    );
    alarm(
      'KinesisIngestPriceTableAgeAlarm',
      `bedrock-meter (kinesis-ingest) ${ageText}`,
      hourly('PriceTableAgeDays', kinesisFn, cloudwatch.Stats.MAXIMUM),
      { threshold: 8, condition: highVolumeOn },
    );
    alarm(
      'KinesisIngestPriceTableLoadFailuresAlarm',
      `bedrock-meter (kinesis-ingest) ${failText}`,
      hourly('PriceTableLoadFailures', kinesisFn, cloudwatch.Stats.SUM),
      highVolumeOnly,
    );
    alarm(
      'PriceSyncErrorsAlarm',
      'bedrock-meter price-sync failed (Price List unreachable, or data errors, so nothing was stored); see its log.',
      priceSyncFn.metricErrors({ statistic: cloudwatch.Stats.SUM, period: Duration.days(1) }),
    );

    // -------------------------------------------------------------------------
    // Dashboard: a CloudWatch dashboard named after the stack, with the spend
    // pages as custom widgets (dashboard-widget, same code as `bedrock-meter
    // dashboard`; the console runs no JavaScript) and the functions' metrics.
    // The console invokes the widget with the viewer's own credentials.
    // -------------------------------------------------------------------------
    const widgetLogGroup = functionLogGroup('DashboardWidgetLogGroup', 'dashboard-widget');
    const widgetRole = lambdaRole(
      'DashboardWidgetFunctionRole',
      'bedrock-meter dashboard-widget function (read-only)',
      'dashboard-widget',
      [
        // Read only: the data contract's access patterns (Query on the table
        // and on gsi1) and budgets (Query of the BUDGET partition).
        new iam.PolicyStatement({
          sid: 'ReadUsage',
          actions: ['dynamodb:Query'],
          resources: [table.tableArn],
        }),
        new iam.PolicyStatement({
          sid: 'ReadUsageIndex',
          actions: ['dynamodb:Query'],
          resources: [`${table.tableArn}/index/gsi1`],
        }),
        new iam.PolicyStatement({
          sid: 'OwnLogGroup',
          actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          resources: [widgetLogGroup.logGroupArn],
        }),
      ],
    );
    rustFunction(
      'DashboardWidgetFunction',
      'dashboard-widget',
      'Renders bedrock-meter spend pages as CloudWatch custom widgets (HTML, no JavaScript)',
      widgetRole,
      widgetLogGroup,
      { USAGE_TABLE: table.tableName, RUST_LOG: 'info' },
    );
    // One line of JSON, character for character the same as in
    // infra/template.yaml (infra/parity.py compares them).
    const dashboard = new cloudwatch.CfnDashboard(this, 'Dashboard', {
      dashboardName: Aws.STACK_NAME,
      dashboardBody: Fn.sub(DASHBOARD_BODY),
    });
    dashboard.overrideLogicalId('Dashboard');

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
    output('AlertTopicArn', topic.ref, 'SNS topic of the budget alerts (subscribe people or systems to it)');
    const conditionalOutput = (
      id: string,
      value: string,
      description: string,
      condition: CfnCondition,
    ) => {
      const o = new CfnOutput(this, `${id}Output`, { value, description, condition });
      o.overrideLogicalId(id);
    };
    output(
      'DashboardName',
      dashboard.ref,
      'CloudWatch dashboard with the spend widgets and the operational metrics',
    );
    conditionalOutput(
      'InvocationLogStreamArn',
      stream.attrArn,
      'Kinesis stream the invocation logs go through (HighVolume true)',
      highVolumeOn,
    );
    conditionalOutput(
      'LogsToKinesisRoleArn',
      logsToKinesisRole.roleArn,
      'Role CloudWatch Logs uses to write to the stream (for infra/region-destination.yaml)',
      highVolumeOn,
    );
    conditionalOutput(
      'CentralLogDestinationArn',
      destination.attrArn,
      'CloudWatch Logs destination that SourceAccountIds subscribe to (infra/source-account.yaml)',
      centralDestinationOn,
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

/** The `architecture` context value (arm64 when unset) as a Lambda architecture. */
function architectureFromContext(value: unknown): lambda.Architecture {
  const name = value === undefined ? 'arm64' : String(value);
  switch (name) {
    case 'arm64':
      return lambda.Architecture.ARM_64;
    case 'x86_64':
      return lambda.Architecture.X86_64;
    default:
      throw new Error(`context architecture must be arm64 or x86_64, not ${JSON.stringify(value)}`);
  }
}

/** Architectures: [Ref Architecture], as in the SAM template (the value is the same). */
function useArchitectureParameter(fn: lambda.Function, parameter: CfnParameter): void {
  (fn.node.defaultChild as lambda.CfnFunction).architectures = [parameter.valueAsString];
}

/** Give an L2 construct's CloudFormation resource the same logical id as in the SAM template. */
function overrideLogicalId(construct: Construct, logicalId: string): void {
  const child = construct.node.defaultChild;
  if (!(child instanceof Object) || !('overrideLogicalId' in child)) {
    throw new Error(`${construct.node.path} has no CloudFormation resource to rename`);
  }
  (child as { overrideLogicalId(id: string): void }).overrideLogicalId(logicalId);
}

/**
 * The CloudWatch dashboard's body (a Fn::Sub template): custom widgets from
 * the dashboard-widget function, then the functions' metrics. The same
 * string is in infra/template.yaml.
 */
const DASHBOARD_BODY =
  '{"widgets":[{"type":"custom","x":0,"y":0,"width":24,"height":14,"properties":{"endpoint":"${DashboardWidgetFunction.Arn}","title":"Bedrock spend this month (UTC): overview, top users, models","params":{"path":"/"},"updateOn":{"refresh":true,"resize":false,"timeRange":false}}},{"type":"custom","x":0,"y":14,"width":12,"height":10,"properties":{"endpoint":"${DashboardWidgetFunction.Arn}","title":"Today (UTC): every user","params":{"path":"/days/today"},"updateOn":{"refresh":true,"resize":false,"timeRange":false}}},{"type":"custom","x":12,"y":14,"width":12,"height":10,"properties":{"endpoint":"${DashboardWidgetFunction.Arn}","title":"Budgets","params":{"path":"/budgets"},"updateOn":{"refresh":true,"resize":false,"timeRange":false}}},{"type":"metric","x":0,"y":24,"width":12,"height":6,"properties":{"title":"Ingest: records, counted, duplicates, skipped, unpriced","region":"${AWS::Region}","view":"timeSeries","stat":"Sum","period":300,"metrics":[["BedrockMeter","Records","FunctionName","${IngestFunction}"],[".","Counted",".","."],[".","Duplicates",".","."],[".","Skipped",".","."],[".","Unpriced",".","."],["BedrockMeter","Counted","FunctionName","${AWS::StackName}-kinesis-ingest",{"label":"Counted (kinesis-ingest)"}],[".","Unpriced",".",".",{"label":"Unpriced (kinesis-ingest)"}]]}},{"type":"metric","x":12,"y":24,"width":12,"height":6,"properties":{"title":"Errors and throttles","region":"${AWS::Region}","view":"timeSeries","stat":"Sum","period":300,"metrics":[["AWS/Lambda","Errors","FunctionName","${IngestFunction}"],[".","Throttles",".","."],[".","Errors",".","${BudgetAlertsFunction}"],[".","Throttles",".","."],[".","Errors",".","${AWS::StackName}-kinesis-ingest"],[".","Throttles",".","."],[".","Errors",".","${DashboardWidgetFunction}"]]}},{"type":"metric","x":0,"y":30,"width":8,"height":6,"properties":{"title":"Duration (p99, ms)","region":"${AWS::Region}","view":"timeSeries","stat":"p99","period":300,"metrics":[["AWS/Lambda","Duration","FunctionName","${IngestFunction}"],["...","${BudgetAlertsFunction}"],["...","${AWS::StackName}-kinesis-ingest"],["...","${DashboardWidgetFunction}"]]}},{"type":"metric","x":8,"y":30,"width":8,"height":6,"properties":{"title":"Kinesis iterator age (HighVolume only, max ms)","region":"${AWS::Region}","view":"timeSeries","stat":"Maximum","period":300,"metrics":[["AWS/Lambda","IteratorAge","FunctionName","${AWS::StackName}-kinesis-ingest"]]}},{"type":"metric","x":16,"y":30,"width":8,"height":6,"properties":{"title":"On-failure queue depth","region":"${AWS::Region}","view":"timeSeries","stat":"Maximum","period":300,"metrics":[["AWS/SQS","ApproximateNumberOfMessagesVisible","QueueName","${OnFailureQueue.QueueName}"],["...","${BudgetAlertsFailureQueue.QueueName}"]]}},{"type":"metric","x":0,"y":36,"width":24,"height":6,"properties":{"title":"Budget alerts: crossings, sent, failed records","region":"${AWS::Region}","view":"timeSeries","stat":"Sum","period":300,"metrics":[["BedrockMeter","Crossings","FunctionName","${BudgetAlertsFunction}"],[".","AlertsSent",".","."],[".","FailedRecords",".","."]]}}]}';
