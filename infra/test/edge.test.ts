// The WAF edge (infra/lib/edge.ts): assertion tests on the template (WAF does not run on
// LocalStack, so nothing here can be exercised end to end locally).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { configFromContext } from '../lib/config';
import { BOT_RULES_COUNTED, BOT_SIGNALS } from '../lib/edge';
import { only, resourcesOf, synth, testPublicKeyFile } from './helpers';

const AWS = {};
const LOCAL = { local: 'true', arch: 'x86_64', redisUrl: 'redis://127.0.0.1:7777' };
const withRule = (rule: object) => ({ Rules: Match.arrayWith([Match.objectLike(rule)]) });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const rulesOf = (context: Record<string, string>): any[] =>
  only(synth(context).template, 'AWS::WAFv2::WebACL')[1].Properties.Rules;

describe('edge (AWS WAF on the API stage)', () => {
  it('AWS: one regional web ACL, allowing by default, associated with the API stage', () => {
    const { template, stack } = synth(AWS);
    const [aclId] = only(template, 'AWS::WAFv2::WebACL');
    template.hasResourceProperties('AWS::WAFv2::WebACL', { Scope: 'REGIONAL', DefaultAction: { Allow: {} } });
    const [, association] = only(template, 'AWS::WAFv2::WebACLAssociation');
    assert.deepEqual(association.Properties.WebACLArn, { 'Fn::GetAtt': [aclId, 'Arn'] });
    const arn = JSON.stringify(association.Properties.ResourceArn);
    const api = stack.api.restApi;
    const ref = (c: { node: { defaultChild?: unknown } }) =>
      JSON.stringify({ Ref: stack.getLogicalId(c.node.defaultChild as never) });
    for (const part of ['::/restapis/', '/stages/', ref(api), ref(api.deploymentStage)]) {
      assert.ok(arn.includes(part), `${part} in ${arn}`);
    }
    assert.ok(template.toJSON().Outputs.WebAclArn);
  });

  it('per-IP ceiling: the seed 10 req/s as 600 per 60 s, 429 with a JSON body and Retry-After; the webhook exempt', () => {
    const { template } = synth(AWS);
    template.hasResourceProperties('AWS::WAFv2::WebACL', {
      ...withRule({
        Name: 'ip-rate',
        Priority: 0,
        Statement: {
          RateBasedStatement: {
            AggregateKeyType: 'IP',
            Limit: 600,
            EvaluationWindowSec: 60,
            ScopeDownStatement: {
              NotStatement: {
                Statement: { ByteMatchStatement: { SearchString: '/webhooks/payments', PositionalConstraint: 'ENDS_WITH' } },
              },
            },
          },
        },
        Action: {
          Block: {
            CustomResponse: {
              ResponseCode: 429,
              CustomResponseBodyKey: 'rate-limited',
              ResponseHeaders: [{ Name: 'Retry-After', Value: '60' }],
            },
          },
        },
      }),
      CustomResponseBodies: {
        'rate-limited': { ContentType: 'APPLICATION_JSON', Content: Match.stringLikeRegexp('"status":429') },
      },
    });
    const [rate] = rulesOf({ wafIpRequestsPerSec: '20', wafRateWindowSec: '120' });
    assert.equal(rate.Statement.RateBasedStatement.Limit, 2400);
    assert.equal(rate.Statement.RateBasedStatement.EvaluationWindowSec, 120);
  });

  it('targeted level behind its flag: the whole group counts (no CAPTCHA/Challenge/block for API calls), its findings forwarded as one more signal', () => {
    const rules = rulesOf({ wafBotControl: 'targeted' });
    const bot = rules.find((r) => r.Name === 'bot-control');
    assert.deepEqual(bot.OverrideAction, { Count: {} });
    const group = bot.Statement.ManagedRuleGroupStatement;
    assert.deepEqual(group.ManagedRuleGroupConfigs, [{ AWSManagedRulesBotControlRuleSet: { InspectionLevel: 'TARGETED' } }]);
    assert.equal(group.RuleActionOverrides, undefined);
    const signal = rules.find((r) => r.Name === 'bot-signal-targeted-finding');
    assert.ok(signal && signal.Priority > bot.Priority);
    assert.deepEqual(signal.Statement, {
      LabelMatchStatement: { Key: 'awswaf:managed:aws:bot-control:targeted:', Scope: 'NAMESPACE' },
    });
    // The default (common) has no such rule and does act (block) on unverifiable bots.
    assert.equal(rulesOf(AWS).find((r) => r.Name === 'bot-signal-targeted-finding'), undefined);
    assert.deepEqual(rulesOf(AWS).find((r) => r.Name === 'bot-control').OverrideAction, { None: {} });
  });

  it('common rules; Bot Control at COMMON with the API-client rules counted; each label forwarded in a header of its own', () => {
    const rules = rulesOf(AWS);
    const common = rules.find((r) => r.Name === 'aws-common');
    assert.deepEqual(common.Statement.ManagedRuleGroupStatement, { VendorName: 'AWS', Name: 'AWSManagedRulesCommonRuleSet' });
    const bot = rules.find((r) => r.Name === 'bot-control');
    const group = bot.Statement.ManagedRuleGroupStatement;
    assert.equal(group.Name, 'AWSManagedRulesBotControlRuleSet');
    assert.deepEqual(group.ManagedRuleGroupConfigs, [{ AWSManagedRulesBotControlRuleSet: { InspectionLevel: 'COMMON' } }]);
    assert.deepEqual(
      group.RuleActionOverrides,
      BOT_RULES_COUNTED.map((Name) => ({ Name, ActionToUse: { Count: {} } })),
    );
    for (const name of ['SignalNonBrowserUserAgent', 'CategoryHttpLibrary']) assert.ok(BOT_RULES_COUNTED.includes(name));
    const headers = new Set<string>();
    for (const signal of BOT_SIGNALS) {
      const rule = rules.find((r) => r.Name === `bot-signal-${signal.slug}`);
      assert.ok(rule && rule.Priority > bot.Priority, `${signal.slug} runs after Bot Control`);
      assert.deepEqual(rule.Statement, { LabelMatchStatement: { Key: signal.key, Scope: signal.scope } });
      const inserted = rule.Action.Count.CustomRequestHandling.InsertHeaders;
      assert.equal(inserted.length, 1);
      // The function reads every x-amzn-waf-bot-signal* header (shared/src/bot/http.rs).
      assert.ok(inserted[0].Name.startsWith('bot-signal'), inserted[0].Name);
      assert.ok(!headers.has(inserted[0].Name), 'WAF overwrites same-name headers: one name per rule');
      headers.add(inserted[0].Name);
    }
    const text = JSON.stringify(rules);
    assert.ok(!text.includes('bot:verified'), 'a verified crawler is not a bot signal');
    assert.ok(!/"(Captcha|Challenge)"/.test(text), 'no CAPTCHA/Challenge action on a JSON API');
    assert.ok(rules.every((r) => !(r.Action && r.OverrideAction)));
    assert.equal(new Set(rules.map((r) => r.Priority)).size, rules.length, 'priorities are unique');
  });

  it('wafBotControl=off drops Bot Control; no WAF on LocalStack or with waf=false', () => {
    assert.ok(rulesOf({ wafBotControl: 'off' }).every((r) => !r.Name.startsWith('bot-')));
    for (const context of [LOCAL, { waf: 'false' }]) {
      const { template } = synth(context);
      assert.equal(resourcesOf(template, 'AWS::WAFv2::WebACL').length, 0, JSON.stringify(context));
      assert.equal(resourcesOf(template, 'AWS::WAFv2::WebACLAssociation').length, 0);
    }
  });

  it('bad context is refused at synth', () => {
    const cfg = (c: Record<string, string>) => configFromContext((k) => c[k]);
    assert.throws(() => cfg({ ...LOCAL, jwtPublicKeyFile: testPublicKeyFile(), waf: 'true' }), /LocalStack has no WAF/);
    assert.throws(() => cfg({ wafRateWindowSec: '90' }), /wafRateWindowSec/);
    assert.throws(() => cfg({ wafBotControl: 'max' }), /wafBotControl/);
    // Its managed rules would answer API calls with CAPTCHA (405) or Challenge (202).
    assert.throws(() => cfg({ wafBotControl: 'aggressive' }), /off, common or targeted/);
    assert.throws(() => cfg({ wafIpRequestsPerSec: '0' }), /wafIpRequestsPerSec/);
  });
});
