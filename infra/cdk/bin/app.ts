#!/usr/bin/env node
// CDK app for bedrock-meter: one stack, BedrockMeter, checked by cdk-nag's
// AwsSolutions pack (an unacknowledged finding fails `cdk synth`).
//
// BEDROCK_METER_SKIP_BUNDLING=1 synthesizes without building the Rust function
// (no cargo, no Docker): infra/check.sh uses it. The CDK CLI always passes
// `aws:cdk:bundling-stacks=["**"]` to `cdk synth`, overriding `-c`, so the
// opt-out goes through postCliContext, which the app applies after the CLI's
// context. Never set it for `cdk deploy`: the asset would be the source tree.

import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { BedrockMeterStack } from '../lib/stack';

const skipBundling = ['1', 'true'].includes(process.env.BEDROCK_METER_SKIP_BUNDLING ?? '');

const app = new App({
  postCliContext: skipBundling ? { 'aws:cdk:bundling-stacks': [] } : {},
});

new BedrockMeterStack(app, 'BedrockMeter', { stackName: 'BedrockMeter' });

// cdk-nag v3 is a CDK policy-validation plugin: any finding not acknowledged
// with Validations.of(construct).acknowledge() interrupts synthesis.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));

app.synth();
