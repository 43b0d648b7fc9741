import { GraphQLError } from 'graphql';

/**
 * graphql-js 16 words a variable it cannot coerce as `Variable "$s" got invalid value <the value>
 * [at "s.path"]; <reason, often repeating the value>`. The value may be a secret (a credential
 * sent as the wrong type), so the message is rebuilt from the variable name, the path and a reason
 * that names only schema types; such errors also get the BAD_USER_INPUT code the rest of the API
 * uses. Literals written in the document get the same treatment.
 */

const INVALID = /^Variable "\$([_A-Za-z][_0-9A-Za-z]*)" got invalid value /;
/** The same for a literal written in the document: `Expected value of type "T", found <value>; <reason>`. */
const LITERAL = /^Expected value of type "([^"]+)", found /;
/** A scalar's own refusal of a literal: `Int cannot represent non-integer value: <value>`. */
const SCALAR = /^((?:String|Int|Float|Boolean|ID|Enum "[^"]+"|[A-Z][A-Za-z]*) cannot represent [a-z0-9 -]*?value): .*$/s;
const OTHER = /^Variable "\$[_A-Za-z][_0-9A-Za-z]*" (of required type "[^"]+" was not provided|of non-null type "[^"]+" must not be null)\.$/;

const REASONS: Array<[RegExp, (m: RegExpMatchArray) => string]> = [
  [/; Field "([^"]+)" is not defined by type "([^"]+)"\.$/, (m) => `field "${m[1]}" is not defined by type "${m[2]}"`],
  [/; Field "([^"]+)" of required type "([^"]+)" was not provided\.$/, (m) => `field "${m[1]}" of required type "${m[2]}" was not provided`],
  [/; Expected type "([^"]+)"(?:\.| to be an object\.)$/, (m) => `expected type "${m[1]}"`],
  [/; Value .* does not exist in "([^"]+)" enum\.$/s, (m) => `not a value of enum "${m[1]}"`],
  [/; ((?:String|Int|Float|Boolean|ID|Enum "[^"]+"|[A-Z][A-Za-z]*) cannot represent [a-z0-9 -]*?value)(?:: .*)?$/s, (m) => m[1]!],
  [/; (expected a JSON object, got an? [a-z]+)$/, (m) => m[1]!],
];

function reasonOf(message: string): string | undefined {
  for (const [pattern, describe] of REASONS) {
    const match = message.match(pattern);
    if (match) return describe(match);
  }
  return undefined;
}

export function sanitizeVariableErrors(errors: readonly Error[] | undefined): void {
  if (!errors) return;
  for (const error of errors) {
    if (!(error instanceof GraphQLError)) continue;
    const scalar = SCALAR.exec(error.message);
    if (scalar) {
      error.message = scalar[1]!;
      continue;
    }
    const literal = LITERAL.exec(error.message);
    if (literal) {
      const reason = reasonOf(error.message);
      error.message = `Expected value of type "${literal[1]}"${reason ? `: ${reason}` : ''}`;
      continue;
    }
    if (!error.message.startsWith('Variable "$')) continue;
    const invalid = INVALID.exec(error.message);
    if (invalid) {
      const name = invalid[1]!;
      const at = error.message.lastIndexOf(` at "${name}`);
      const path = at === -1 ? undefined : /^ at "([^"]*)"; /.exec(error.message.slice(at))?.[1];
      const reason = reasonOf(error.message);
      error.message = `Variable "$${name}" got an invalid value${path ? ` at "${path}"` : ''}${reason ? `: ${reason}` : ''}`;
    } else if (!OTHER.test(error.message)) {
      continue;
    }
    (error.extensions as Record<string, unknown>).code ??= 'BAD_USER_INPUT';
  }
}
