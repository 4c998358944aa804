import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { Monitoring } from './monitoring';

export interface AslStateMachineProps {
  /** Path of the ASL JSON file (normally `<repo>/statemachines/<name>.asl.json`). */
  readonly definitionFile: string;
  /**
   * `${Key}` placeholders in the ASL and their values (function ARNs, queue URLs, table names...).
   * Every placeholder in the file must have a value, and every value must be used.
   */
  readonly substitutions: Record<string, string>;
  /** Functions the state machine invokes (`lambda:InvokeFunction` on exactly these). */
  readonly invokes?: readonly lambda.IFunction[];
  /** Queues the state machine sends to (`sqs:SendMessage` on exactly these), e.g. the saga DLQ. */
  readonly sendsTo?: readonly sqs.IQueue[];
  readonly monitoring: Monitoring;
}

/**
 * A Standard state machine whose definition is an ASL file of `statemachines/` with
 * `definitionSubstitutions`, least-privilege permissions and an ExecutionsFailed alarm.
 * The definition is inlined (DefinitionString), so the template shows it and no S3 asset is needed.
 */
export class AslStateMachine extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: AslStateMachineProps) {
    super(scope, id);
    const text = fs.readFileSync(props.definitionFile, 'utf8');
    try {
      JSON.parse(text);
    } catch (e) {
      throw new Error(`${props.definitionFile} is not valid JSON: ${(e as Error).message}`);
    }
    // CloudFormation reads every `${...}` of the definition as a substitution, a Comment's
    // included: one that is not a `${Name}` placeholder fails the CDK's CloudFormation validation
    // (E1029, "embedded parameter outside of an Fn::Sub"), i.e. `cdk synth`. Say it here instead.
    const stray = [...text.matchAll(/\$\{(?![A-Za-z0-9_]+\})[^}\n]{0,40}\}?/g)].map((m) => m[0]);
    if (stray.length) {
      throw new Error(
        `${path.basename(props.definitionFile)}: "\${" that is not a \${Name} placeholder: [${stray.join(', ')}]`,
      );
    }
    const used = new Set([...text.matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]));
    const missing = [...used].filter((k) => !(k in props.substitutions));
    const unused = Object.keys(props.substitutions).filter((k) => !used.has(k));
    if (missing.length || unused.length) {
      throw new Error(
        `${path.basename(props.definitionFile)}: placeholders without a value: [${missing.join(', ')}]; ` +
          `values without a placeholder: [${unused.join(', ')}]`,
      );
    }

    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromString(text),
      definitionSubstitutions: props.substitutions,
    });
    for (const fn of props.invokes ?? []) fn.grantInvoke(this.stateMachine);
    for (const queue of props.sendsTo ?? []) queue.grantSendMessages(this.stateMachine);
    props.monitoring.alarmOnExecutionsFailed(id, this.stateMachine);
  }
}
