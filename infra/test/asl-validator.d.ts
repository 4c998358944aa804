// asl-validator ships no type declarations: the part of its API the tests use
// (README "In your code"; dist/src/validator.js).
declare module 'asl-validator' {
  interface AslValidatorError {
    readonly 'Error code': string;
    readonly Message: string;
  }
  interface AslValidatorResult {
    readonly isValid: boolean;
    readonly errors: readonly AslValidatorError[];
    errorsText(separator?: string): string;
  }
  /** Note: it writes a default QueryLanguage into every state of `definition`; pass a copy. */
  function aslValidator(
    definition: unknown,
    opts?: { readonly checkPaths?: boolean; readonly checkArn?: boolean },
  ): AslValidatorResult;
  export = aslValidator;
}
