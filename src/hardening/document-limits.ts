import {
  Kind,
  NoFragmentCyclesRule,
  validate,
  type DocumentNode,
  type FragmentDefinitionNode,
  type GraphQLError,
  type SelectionSetNode,
  type ValueNode,
} from 'graphql';
import type { Plugin } from 'graphql-yoga';
import type { Limits } from '../config.ts';
import { limitExceeded } from '../errors.ts';

/**
 * Limits on what validating a document can cost, checked on the parsed document before any
 * validation rule runs. graphql-js 16's OverlappingFieldsCanBeMerged compares every pair of
 * selections that land on the same response key: a 6 KB document repeating one field 1,990 times
 * took half a second of the one thread. So:
 * - fields: every field the operations and fragments select, each fragment spread counted as the
 *   fields it expands to (so fragments cannot multiply work past the limit; computed once per
 *   fragment, so fan-out costs nothing to count);
 * - fieldRepeats: how many selections merge into one key of the answer (the same field or alias
 *   at the same place, through repeats, fragments or repeated parents): the pairwise comparisons
 *   grow with its square;
 * - fragmentSpreads: how many fragment spreads land at one place of the answer (graphql-js
 *   compares every pair of fragments spread together);
 * - literals (variableDepth): objects and lists written in the document nest no deeper than
 *   TENANTGATE_MAX_VARIABLE_DEPTH allows for variables, since the same code takes them on.
 * A document with a fragment cycle is answered with graphql-js's own cycle error, from that rule
 * alone (the other rules would follow the cycle).
 */

export interface DocumentLimits {
  maxFields: number;
  maxFieldRepeats: number;
  maxFragmentSpreads: number;
  maxVariableDepth: number;
}

/** A merged place in the answer: how many selections land on it, and the places under it. */
interface Place {
  count: number;
  /** Fragment spreads that land here (directly, in inline fragments, or in spread fragments). */
  spreads: number;
  children: Map<string, Place> | undefined;
}

const CYCLE = -1;

/** Fields each fragment expands to, capped at `cap` (any count over it is as bad); CYCLE on a cycle. */
function expandedFields(document: DocumentNode, fragments: Map<string, FragmentDefinitionNode>, cap: number): number {
  const memo = new Map<string, number>();
  const visiting = new Set<string>();
  let cycle = false;

  const ofSet = (set: SelectionSetNode): number => {
    let total = 0;
    for (const selection of set.selections) {
      if (cycle) return cap;
      if (selection.kind === Kind.FIELD) total += 1 + (selection.selectionSet ? ofSet(selection.selectionSet) : 0);
      else if (selection.kind === Kind.INLINE_FRAGMENT) total += ofSet(selection.selectionSet);
      else total += ofFragment(selection.name.value);
      if (total >= cap) return cap;
    }
    return total;
  };
  const ofFragment = (name: string): number => {
    const known = memo.get(name);
    if (known !== undefined) return known;
    const fragment = fragments.get(name);
    if (!fragment) return 0; // unknown: validation says so
    if (visiting.has(name)) {
      cycle = true;
      return cap;
    }
    visiting.add(name);
    const count = ofSet(fragment.selectionSet);
    visiting.delete(name);
    memo.set(name, count);
    return count;
  };

  let total = 0;
  for (const definition of document.definitions) {
    if (definition.kind === Kind.OPERATION_DEFINITION) total += ofSet(definition.selectionSet);
    else if (definition.kind === Kind.FRAGMENT_DEFINITION) total += ofFragment(definition.name.value);
    if (cycle) return CYCLE;
    if (total >= cap) return cap;
  }
  return total;
}

/** 'fieldRepeats' when some key of the answer has more selections merged into it than allowed, 'fragmentSpreads' when some place takes more spreads. */
function repeatsOver(document: DocumentNode, fragments: Map<string, FragmentDefinitionNode>, max: number, maxSpreads: number): 'fieldRepeats' | 'fragmentSpreads' | undefined {
  // Iterative: nesting is bounded only by the token limit here (depth is checked in validation).
  const visit = (root: SelectionSetNode): 'fieldRepeats' | 'fragmentSpreads' | undefined => {
    const stack: Array<[SelectionSetNode, Place]> = [[root, { count: 1, spreads: 0, children: undefined }]];
    while (stack.length > 0) {
      const [set, place] = stack.pop()!;
      for (const selection of set.selections) {
        if (selection.kind === Kind.FIELD) {
          const key = selection.alias?.value ?? selection.name.value;
          place.children ??= new Map();
          let child = place.children.get(key);
          if (!child) {
            child = { count: 0, spreads: 0, children: undefined };
            place.children.set(key, child);
          }
          if (++child.count > max) return 'fieldRepeats';
          if (selection.selectionSet) stack.push([selection.selectionSet, child]);
        } else if (selection.kind === Kind.INLINE_FRAGMENT) {
          stack.push([selection.selectionSet, place]);
        } else {
          if (++place.spreads > maxSpreads) return 'fragmentSpreads';
          const fragment = fragments.get(selection.name.value);
          if (fragment) stack.push([fragment.selectionSet, place]);
        }
      }
    }
    return undefined;
  };
  for (const definition of document.definitions) {
    if (definition.kind === Kind.OPERATION_DEFINITION || definition.kind === Kind.FRAGMENT_DEFINITION) {
      const over = visit(definition.selectionSet);
      if (over) return over;
    }
  }
  return undefined;
}

/** The deepest object or list literal in the document (1 for `{ a: 1 }`), iteratively. */
function literalDepth(document: DocumentNode): number {
  let deepest = 0;
  const stack: Array<[ValueNode, number]> = [];
  const add = (value: ValueNode | undefined) => {
    if (value && (value.kind === Kind.OBJECT || value.kind === Kind.LIST)) stack.push([value, 1]);
  };
  const addArguments = (node: { arguments?: readonly { value: ValueNode }[]; directives?: readonly { arguments?: readonly { value: ValueNode }[] }[] }) => {
    for (const argument of node.arguments ?? []) add(argument.value);
    for (const directive of node.directives ?? []) for (const argument of directive.arguments ?? []) add(argument.value);
  };
  const sets: SelectionSetNode[] = [];
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION && definition.kind !== Kind.FRAGMENT_DEFINITION) continue;
    addArguments(definition);
    for (const variable of definition.variableDefinitions ?? []) {
      add(variable.defaultValue);
      addArguments(variable);
    }
    sets.push(definition.selectionSet);
  }
  while (sets.length > 0) {
    for (const selection of sets.pop()!.selections) {
      addArguments(selection);
      if (selection.kind !== Kind.FRAGMENT_SPREAD && selection.selectionSet) sets.push(selection.selectionSet);
    }
  }
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!;
    if (depth > deepest) deepest = depth;
    const children = value.kind === Kind.OBJECT ? value.fields.map((f) => f.value) : value.kind === Kind.LIST ? value.values : [];
    for (const child of children) if (child.kind === Kind.OBJECT || child.kind === Kind.LIST) stack.push([child, depth + 1]);
  }
  return deepest;
}

/** The limit `document` breaks, as the error to answer with, or undefined; 'cycle' for a fragment cycle. */
export function checkDocument(document: DocumentNode, limits: DocumentLimits): GraphQLError | 'cycle' | undefined {
  // A literal sits where a variable's value would: one level below the variables object.
  if (literalDepth(document) + 1 > limits.maxVariableDepth) {
    return limitExceeded('variableDepth', `Literal nesting limit of ${limits.maxVariableDepth} exceeded (objects and lists written in the document)`);
  }
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION && !fragments.has(definition.name.value)) fragments.set(definition.name.value, definition);
  }
  const fields = expandedFields(document, fragments, limits.maxFields + 1);
  if (fields === CYCLE) return 'cycle';
  if (fields > limits.maxFields) {
    return limitExceeded('fields', `Field limit of ${limits.maxFields} exceeded (fragment spreads count the fields they expand to)`);
  }
  const over = repeatsOver(document, fragments, limits.maxFieldRepeats, limits.maxFragmentSpreads);
  if (over === 'fieldRepeats') {
    return limitExceeded(
      'fieldRepeats',
      `Field repeat limit of ${limits.maxFieldRepeats} exceeded: one key of the answer is selected more than ${limits.maxFieldRepeats} times`,
    );
  }
  if (over === 'fragmentSpreads') {
    return limitExceeded(
      'fragmentSpreads',
      `Fragment spread limit of ${limits.maxFragmentSpreads} exceeded: one place of the answer takes more than ${limits.maxFragmentSpreads} fragment spreads`,
    );
  }
  return undefined;
}

/**
 * Runs checkDocument before validation; a document over a limit is answered with that one error
 * and no validation rule runs. Results are kept per parsed document, as Yoga keeps parsed
 * documents and their validation per query text.
 */
export function useDocumentLimits(limits: DocumentLimits): Plugin {
  const checked = new WeakMap<DocumentNode, readonly GraphQLError[] | null>();
  return {
    onValidate({ params, setResult }) {
      const { documentAST, schema } = params;
      let errors = checked.get(documentAST);
      if (errors === undefined) {
        const verdict = checkDocument(documentAST, limits);
        // graphql-js 16.11's OverlappingFieldsCanBeMerged overflows the stack on a cycle with fan-out.
        const cycles = verdict === 'cycle' ? validate(schema, documentAST, [NoFragmentCyclesRule]) : [];
        errors = verdict === undefined ? null : verdict === 'cycle' ? (cycles.length > 0 ? cycles : null) : [verdict];
        checked.set(documentAST, errors);
      }
      if (errors) setResult(errors);
    },
  };
}
