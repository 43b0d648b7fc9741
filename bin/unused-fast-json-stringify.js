// Stands in for fast-json-stringify in dist/tenantgate.mjs (bin/bundle.js). graphql-jit imports
// it at load, but calls it only with its customJSONSerializer option, which the gateway never sets
// (src/graphql/compiled-execution.ts): bundled, it and the ajv it loads were some 550 KB of code
// parsed and run at every start, and a few MB of memory, for nothing.
export default function fastJson() {
  throw new Error('fast-json-stringify is left out of the bundle: graphql-jit customJSONSerializer is not supported');
}
