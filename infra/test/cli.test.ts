// End to end through the pinned CDK CLI and cdk.json, with the context deploy-local.sh passes.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { INFRA_DIR } from '../lib/config';
import { fakeLambdaDir, tempDir } from './helpers';

describe('cdk synth (CLI)', () => {
  it('synthesises the LocalStack stack offline from cdk.json with -c local=true -c arch=x86_64', () => {
    const lambdaDir = fakeLambdaDir();
    const out = tempDir('cdkout');
    execFileSync(
      path.join(INFRA_DIR, 'node_modules', '.bin', 'cdk'),
      ['synth', '--quiet', '--no-notices', '--no-version-reporting', '-o', out,
        '-c', 'local=true', '-c', 'arch=x86_64', '-c', `lambdaDir=${lambdaDir}`],
      {
        cwd: INFRA_DIR,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, CDK_DISABLE_CLI_TELEMETRY: 'true' },
        timeout: 60_000,
      },
    );
    const template = JSON.parse(fs.readFileSync(path.join(out, 'Flashsale-dev.template.json'), 'utf8'));
    const fns = Object.values<any>(template.Resources).filter((r) => r.Type === 'AWS::Lambda::Function');
    assert.equal(fns.length, 1);
    assert.deepEqual(fns[0].Properties.Architectures, ['x86_64']);
    assert.equal(fns[0].Properties.Environment.Variables.REDIS_URL, 'redis://127.0.0.1:6379');
    assert.ok(!Object.values<any>(template.Resources).some((r) => r.Type.startsWith('AWS::EC2::')));
    // The function code is the build output, zipped as an asset.
    const assets = JSON.parse(fs.readFileSync(path.join(out, 'Flashsale-dev.assets.json'), 'utf8'));
    const zips = Object.values<any>(assets.files).filter((f) => f.source.packaging === 'zip');
    assert.equal(zips.length, 1);
    assert.ok(fs.existsSync(path.join(out, zips[0].source.path, 'bootstrap')));
  });
});
