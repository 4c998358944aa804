// The edge layer on AWS (seed 004 flows 8 and 10): a regional AWS WAF web ACL on the API
// stage. It sheds a flooding address before it costs a Lambda invocation, drops what AWS's
// common rules call an attack, and passes Bot Control's findings on to the functions, whose bot
// defence (shared/src/bot) scores them, challenges and blocks. WAF does not run on LocalStack.
//
// Choices (sources: the AWS WAF developer guide):
// - The per-IP ceiling is a rate-based rule: WAF counts over a window of 60, 120, 300 or 600 s
//   (the lowest limit is 10), so the seed's 10 requests/s per IP becomes 600 per 60 s, an
//   average over the window rather than a token bucket (the per-IP bucket in Redis stays).
// - Its 429 body is application/json: a WAF custom response can only be text/plain, text/html
//   or application/json, not application/problem+json; the members are those of our problems.
// - Bot Control's rules that would block API clients for being API clients (non-browser user
//   agent, HTTP library, automation, data-centre addresses) are counted, not blocked: the
//   request goes on with a header, and the function's graduated defence decides.
// - One inserted header per label: WAF overwrites same-name headers, keeping only the last
//   rule's; the function reads every `x-amzn-waf-bot-signal*` header.
// - No CAPTCHA or Challenge action: without a WAF token they answer 405 and 202 to API calls
//   (the interstitial needs a GET that accepts text/html), and a 202 to POST .../reservations
//   would read as success. The functions challenge instead (403 challenge-required).
// - The payment webhook skips the per-IP rule and Bot Control: the provider calls from few
//   addresses, and the handler checks its signature.
import type * as apigateway from 'aws-cdk-lib/aws-apigateway';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import type { EdgeConfig } from './config';

type Statement = wafv2.CfnWebACL.StatementProperty;

const BOT_CONTROL = 'awswaf:managed:aws:bot-control:';

/**
 * Bot Control labels passed on, each in a header of its own: `x-amzn-waf-bot-signal-<slug>:
 * <slug>` (WAF adds the `x-amzn-waf-` prefix). Only findings that should raise a score: a
 * verified bot (a search engine's crawler) is not one.
 */
export const BOT_SIGNALS: readonly { slug: string; key: string; scope: 'LABEL' | 'NAMESPACE' }[] = [
  { slug: 'unverified-bot', key: `${BOT_CONTROL}bot:unverified`, scope: 'LABEL' },
  { slug: 'non-browser-user-agent', key: `${BOT_CONTROL}signal:non_browser_user_agent`, scope: 'LABEL' },
  { slug: 'known-bot-data-center', key: `${BOT_CONTROL}signal:known_bot_data_center`, scope: 'LABEL' },
  { slug: 'automated-browser', key: `${BOT_CONTROL}signal:automated_browser`, scope: 'LABEL' },
];
/**
 * With the targeted level: any of its findings (browser inconsistency, token reuse,
 * volumetric sessions, the machine-learning rules), one signal.
 */
export const TARGETED_SIGNAL = { slug: 'targeted-finding', key: `${BOT_CONTROL}targeted:`, scope: 'NAMESPACE' } as const;
/**
 * Bot Control rules counted instead of blocked. AWS ignores an override whose rule name does not
 * exist, silently: check the names against `aws wafv2 describe-managed-rule-group --scope
 * REGIONAL --vendor-name AWS --name AWSManagedRulesBotControlRuleSet` when upgrading.
 */
export const BOT_RULES_COUNTED = [
  'SignalNonBrowserUserAgent',
  'CategoryHttpLibrary',
  'SignalAutomatedBrowser',
  'SignalKnownBotDataCenter',
];

/** The key of the 429 body among the ACL's custom response bodies. */
export const RATE_LIMITED_BODY = 'rate-limited';

export interface EdgeProps {
  /** Prefix of the ACL's and its metrics' names, e.g. `flashsale-dev`. */
  readonly name: string;
  readonly stage: apigateway.Stage;
  readonly config: EdgeConfig;
}

const pathEndsWith = (suffix: string): Statement => ({
  byteMatchStatement: {
    fieldToMatch: { uriPath: {} },
    positionalConstraint: 'ENDS_WITH',
    searchString: suffix,
    textTransformations: [{ priority: 0, type: 'NONE' }],
  },
});

/** An OR needs two statements or more. */
const anyOf = (statements: Statement[]): Statement =>
  statements.length === 1 ? statements[0] : { orStatement: { statements } };

export class Edge extends Construct {
  readonly webAcl: wafv2.CfnWebACL;

  constructor(scope: Construct, id: string, props: EdgeProps) {
    super(scope, id);
    const { config } = props;
    const visibility = (metric: string): wafv2.CfnWebACL.VisibilityConfigProperty => ({
      cloudWatchMetricsEnabled: true,
      sampledRequestsEnabled: true,
      metricName: `${props.name}-${metric}`,
    });
    const notExempt: Statement | undefined = config.exemptPathSuffixes.length
      ? { notStatement: { statement: anyOf(config.exemptPathSuffixes.map(pathEndsWith)) } }
      : undefined;

    const rules: wafv2.CfnWebACL.RuleProperty[] = [
      {
        // First: a flooding address is refused before the managed rules (billed per request)
        // look at it.
        name: 'ip-rate',
        priority: 0,
        statement: {
          rateBasedStatement: {
            aggregateKeyType: 'IP',
            evaluationWindowSec: config.rateWindowSec,
            limit: config.ipRequestsPerSec * config.rateWindowSec,
            scopeDownStatement: notExempt,
          },
        },
        action: {
          block: {
            customResponse: {
              responseCode: 429,
              customResponseBodyKey: RATE_LIMITED_BODY,
              // WAF blocks until the address's rate over the window is under the limit again.
              responseHeaders: [{ name: 'Retry-After', value: String(config.rateWindowSec) }],
            },
          },
        },
        visibilityConfig: visibility('ip-rate'),
      },
      {
        name: 'aws-common',
        priority: 10,
        overrideAction: { none: {} },
        statement: { managedRuleGroupStatement: { vendorName: 'AWS', name: 'AWSManagedRulesCommonRuleSet' } },
        visibilityConfig: visibility('aws-common'),
      },
    ];
    if (config.botInspection !== 'off') {
      const targeted = config.botInspection === 'TARGETED';
      rules.push({
        name: 'bot-control',
        priority: 20,
        // Targeted (behind its flag): the whole group counts. Its rules would answer API calls
        // with CAPTCHA (405) or Challenge (202, which reads as success to a reservation client)
        // and need AWS's JavaScript SDK tokens the front end does not send; so nothing of it
        // acts here, its findings become signals and the functions challenge instead.
        overrideAction: targeted ? { count: {} } : { none: {} },
        statement: {
          managedRuleGroupStatement: {
            vendorName: 'AWS',
            name: 'AWSManagedRulesBotControlRuleSet',
            managedRuleGroupConfigs: [{ awsManagedRulesBotControlRuleSet: { inspectionLevel: config.botInspection } }],
            ...(!targeted && { ruleActionOverrides: BOT_RULES_COUNTED.map((name) => ({ name, actionToUse: { count: {} } })) }),
            scopeDownStatement: notExempt,
          },
        },
        visibilityConfig: visibility('bot-control'),
      });
      const signals = targeted ? [...BOT_SIGNALS, TARGETED_SIGNAL] : BOT_SIGNALS;
      signals.forEach((signal, i) =>
        rules.push({
          // After Bot Control, whose labels they match.
          name: `bot-signal-${signal.slug}`,
          priority: 30 + i,
          statement: { labelMatchStatement: { scope: signal.scope, key: signal.key } },
          action: {
            count: {
              customRequestHandling: { insertHeaders: [{ name: `bot-signal-${signal.slug}`, value: signal.slug }] },
            },
          },
          visibilityConfig: visibility(`bot-signal-${signal.slug}`),
        }),
      );
    }

    this.webAcl = new wafv2.CfnWebACL(this, 'WebAcl', {
      name: `${props.name}-edge`,
      description: 'flashsale edge: per-IP ceiling, AWS common rules, Bot Control findings passed on',
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      customResponseBodies: {
        [RATE_LIMITED_BODY]: {
          contentType: 'APPLICATION_JSON',
          content: JSON.stringify({
            type: '/problems/rate-limited',
            title: 'Too many requests',
            status: 429,
            detail: 'Too many requests from this address; retry after the seconds in Retry-After.',
          }),
        },
      },
      rules,
      visibilityConfig: visibility('acl'),
    });
    new wafv2.CfnWebACLAssociation(this, 'StageAssociation', {
      resourceArn: props.stage.stageArn,
      webAclArn: this.webAcl.attrArn,
    });
  }
}
