import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { configFromContext, INFRA_DIR } from '../lib/config';
import { FlashsaleStack, type FlashsaleStackProps } from '../lib/flashsale-stack';
import { FUNCTIONS } from '../lib/functions';

/** Every cargo binary of FUNCTIONS (local-only ones included). */
export const ALL_FUNCTION_NAMES: readonly string[] = FUNCTIONS.map((f) => f.name);

/** The feature flags of cdk.json, so tests synthesise what `cdk synth` synthesises. */
const CDK_JSON_CONTEXT: Record<string, unknown> = JSON.parse(
  fs.readFileSync(path.join(INFRA_DIR, 'cdk.json'), 'utf8'),
).context;

const tempDirs: string[] = [];
process.on('exit', () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `flashsale-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}

/** A fake `cargo lambda build` output: `<dir>/<name>/bootstrap` for each name (default: all of FUNCTIONS). */
export function fakeLambdaDir(names: readonly string[] = ALL_FUNCTION_NAMES, content?: Buffer | string): string {
  const dir = tempDir('lambda');
  for (const name of names) {
    fs.mkdirSync(path.join(dir, name));
    // Distinct placeholders by default, so every function gets its own asset (as real builds do).
    fs.writeFileSync(path.join(dir, name, 'bootstrap'), content ?? `placeholder ${name}`, { mode: 0o755 });
  }
  return dir;
}

/** Minimal ELF header for the given e_machine (0x3e x86_64, 0xb7 aarch64). */
export function elfHeader(machine: number): Buffer {
  const b = Buffer.alloc(64);
  b.writeUInt32BE(0x7f454c46, 0); // \x7fELF
  b[4] = 2; // 64-bit
  b[5] = 1; // little endian
  b[6] = 1;
  b.writeUInt16LE(2, 16); // ET_EXEC
  b.writeUInt16LE(machine, 18);
  return b;
}

let sharedLambdaDir: string | undefined;

let keyPair: { publicPem: string; privatePem: string } | undefined;
/** One RSA key pair per test process (what deploy-local.sh makes with openssl). */
export function testKeyPair(): { publicPem: string; privatePem: string } {
  keyPair ??= (() => {
    const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    return {
      publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    };
  })();
  return keyPair;
}

let sharedPublicKeyFile: string | undefined;
/** A temp `public.pem` (and `private.pem` next to it), as `.local/jwt/` holds them. */
export function testPublicKeyFile(): string {
  if (!sharedPublicKeyFile) {
    const dir = tempDir('jwt');
    fs.writeFileSync(path.join(dir, 'private.pem'), testKeyPair().privatePem, { mode: 0o600 });
    sharedPublicKeyFile = path.join(dir, 'public.pem');
    fs.writeFileSync(sharedPublicKeyFile, testKeyPair().publicPem);
  }
  return sharedPublicKeyFile;
}

export interface Synth {
  readonly app: App;
  readonly stack: FlashsaleStack;
  readonly template: Template;
}

/**
 * Builds the stack from string context values, exactly as `cdk synth -c key=value` would pass
 * them. `lambdaDir` defaults to a shared fake build output holding every function's bootstrap;
 * with `local=true`, `jwtPublicKeyFile` defaults to a temp PEM.
 */
export function buildStack(
  context: Record<string, string> = {},
  extra: Omit<FlashsaleStackProps, 'config'> = {},
  before?: (stack: FlashsaleStack) => void,
): Synth {
  const { app, stack } = makeStack(context, extra);
  before?.(stack);
  return { app, stack, template: Template.fromStack(stack) };
}

/** The stack before synthesis (errors annotated on constructs would make synthesis throw). */
export function makeStack(
  context: Record<string, string> = {},
  extra: Omit<FlashsaleStackProps, 'config'> = {},
): { app: App; stack: FlashsaleStack } {
  sharedLambdaDir ??= fakeLambdaDir();
  const ctx: Record<string, string> = {
    lambdaDir: sharedLambdaDir,
    ...(context.local === 'true' ? { jwtPublicKeyFile: testPublicKeyFile() } : {}),
    ...context,
  };
  const app = new App({ context: { ...CDK_JSON_CONTEXT } });
  const config = configFromContext((key) => ctx[key]);
  const stack = new FlashsaleStack(app, `Flashsale-${config.stage}`, { config, ...extra });
  return { app, stack };
}

/** Error annotations in the construct tree (what `cdk synth` would report and fail on). */
export function errorsOf(stack: FlashsaleStack): string[] {
  return stack.node
    .findAll()
    .flatMap((c) => c.node.metadata)
    .filter((m) => m.type === 'aws:cdk:error')
    .map((m) => String(m.data));
}

const cache = new Map<string, Synth>();
/** buildStack, memoised per context (the common templates are synthesised once per test file). */
export function synth(context: Record<string, string> = {}): Synth {
  const key = JSON.stringify(Object.entries(context).sort());
  let s = cache.get(key);
  if (!s) {
    s = buildStack(context);
    cache.set(key, s);
  }
  return s;
}

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Resources of one type, as [logicalId, resource] pairs. */
export function resourcesOf(template: Template, type: string): [string, Json][] {
  return Object.entries(template.findResources(type));
}

/** The single resource of a type (fails if there are 0 or several). */
export function only(template: Template, type: string): [string, Json] {
  const found = resourcesOf(template, type);
  if (found.length !== 1) throw new Error(`expected exactly one ${type}, found ${found.length}`);
  return found[0];
}

/** Every IAM-style statement `Action`/`NotAction` value anywhere in the template. */
export function allActions(template: Template): string[] {
  const actions: string[] = [];
  const walk = (node: Json): void => {
    if (Array.isArray(node)) {
      node.forEach(walk);
    } else if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) {
        if (k === 'Action' || k === 'NotAction') {
          for (const a of Array.isArray(v) ? v : [v]) actions.push(typeof a === 'string' ? a : JSON.stringify(a));
        } else {
          walk(v);
        }
      }
    }
  };
  walk(template.toJSON().Resources);
  return actions;
}

/** Statements of all AWS::IAM::Policy resources attached to the role with this logical id. */
export function statementsOfRole(template: Template, roleLogicalId: string): Json[] {
  return resourcesOf(template, 'AWS::IAM::Policy')
    .filter(([, p]) => (p.Properties.Roles ?? []).some((r: Json) => r.Ref === roleLogicalId))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement);
}

export function asArray<T>(v: T | T[]): T[] {
  return Array.isArray(v) ? v : [v];
}
